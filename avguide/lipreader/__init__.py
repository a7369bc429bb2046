"""The lip-reading expert: Auto-AVSR-compatible audio-visual and visual-only models,
tokenisers, CTC / joint CTC-attention decoding and checkpoint import.

Modules: ``config`` (hyper-parameters, presets), ``preprocess`` (input normalisation),
``frontends``, ``attention``, ``conformer``, ``decoder``, ``losses``, ``model`` (builders),
``tokenizers``, ``ctc_prefix``, ``beam_search``, ``checkpoint``.
"""
