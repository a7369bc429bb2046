"""The lip-reading expert: Auto-AVSR-compatible audio-visual and visual-only models,
tokenisers, CTC / joint CTC-attention decoding and checkpoint import.

Typical use::

    from avguide.lipreader import (build_expert, avsr_cpu_small, CharTokenizer, recognize,
                                   normalize_video, normalize_audio, pad_targets)
    tok = CharTokenizer()
    model = build_expert(avsr_cpu_small(odim=tok.odim))
    losses = model(normalize_video(frames), frame_lengths,          # (B,T,1,H,W), (B,)
                   normalize_audio(wav, wav_lengths), wav_lengths,  # (B,L), (B,)
                   pad_targets([tok.encode(t) for t in texts]))     # (B,S), -1 padded
    losses["loss"].backward()
    hyps = recognize(model.eval(), model.encode(video, frame_lengths, audio, wav_lengths))
    texts = [tok.decode(h.tokens(model.sos, model.eos)) for h in hyps]

Modules: ``config`` (hyper-parameters, preset functions, named in :mod:`avguide.presets`),
``preprocess`` (input normalisation), ``frontends``, ``attention``, ``conformer``, ``decoder``,
``losses``, ``model`` (builders), ``tokenizers``, ``ctc_prefix``, ``beam_search``, ``checkpoint``.
"""

from avguide.lipreader.beam_search import Hypothesis, beam_search, ctc_greedy, recognize
from avguide.lipreader.checkpoint import expert_from_auto_avsr, load_auto_avsr_checkpoint
from avguide.lipreader.config import (ExpertConfig, avsr_base, avsr_cpu_small,
                                      config_from_auto_avsr, vsr_base, vsr_cpu_small)
from avguide.lipreader.model import Encoded, LipReadingExpert, build_avsr, build_expert, build_vsr
from avguide.lipreader.preprocess import (SAMPLES_PER_FRAME, VIDEO_MEAN, VIDEO_STD,
                                          normalize_audio, normalize_video)
from avguide.lipreader.tokenizers import CharTokenizer, SentencePieceTokenizer, pad_targets

__all__ = [
    "Hypothesis", "beam_search", "ctc_greedy", "recognize", "expert_from_auto_avsr",
    "load_auto_avsr_checkpoint", "ExpertConfig", "avsr_base", "avsr_cpu_small",
    "config_from_auto_avsr", "vsr_base", "vsr_cpu_small", "Encoded", "LipReadingExpert",
    "build_avsr", "build_expert", "build_vsr", "SAMPLES_PER_FRAME", "VIDEO_MEAN", "VIDEO_STD",
    "normalize_audio", "normalize_video", "CharTokenizer", "SentencePieceTokenizer", "pad_targets",
]
