"""Evaluation metrics of predicted vertex sequences.

* :mod:`avguide.metrics.geometry`: LVE, MVE, FDD (numpy primitives, float64 accumulation).
* :mod:`avguide.metrics.text`: text normalisation, Levenshtein distance, CER, WER, VER.
* :mod:`avguide.metrics.matching`: pairing prediction files with ground truth, safe loading.
* :mod:`avguide.metrics.evaluate`: length reconciliation, per-sequence rows, summaries,
  with a pluggable lip reader for CER / WER / VER.
* :mod:`avguide.metrics.report`: ``report.json`` (atomic, with version and config) and markdown.
"""
