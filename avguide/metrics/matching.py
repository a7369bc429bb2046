"""Pairing predicted vertex files with ground-truth sequences by name, and loading them.

Ground-truth names are file stems such as ``FaceTalk_170809_00138_TA_sentence21`` (VOCASET
and the synthetic benchmark) or ``F2_e37`` (BIWI): ``<subject>_<sentence>``, the sentence
being the last ``_``-separated part. A prediction file is named after its ground truth, with
``.npy`` or ``.npz``, optionally followed by a speaking-style condition and/or ``_pred``:

    F2_e37.npy                                    -> F2_e37, condition None
    F2_e37_condition_M3.npy                       -> F2_e37, condition "M3"
    FaceTalk_170809_00138_TA_sentence21_condition_FaceTalk_170725_00137_TA.npz
    F2_e37_pred.npy, F2_e37_condition_M3_pred.npy -> "_pred" is ignored

The ground-truth name is found as the longest known name that the stem equals or starts with
followed by ``_`` (so ``F2_e3`` never captures ``F2_e37``); any other suffix is an error.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from avguide.errors import BadInputError, MissingFileError

MOTION_SUFFIXES = (".npy", ".npz")
"""File extensions recognised as vertex sequences."""

_CONDITION = "condition_"
_PRED = "pred"


@dataclasses.dataclass(frozen=True)
class Match:
    """One prediction file paired with its ground-truth sequence.

    Attributes:
        pred_path: the prediction file.
        gt_name: stem of the ground-truth sequence (e.g. ``F2_e37``).
        condition: the speaking-style condition in the file name, or None.
    """

    pred_path: Path
    gt_name: str
    condition: str | None

    @property
    def subject(self) -> str:
        """Subject of the ground truth (the key of its template)."""
        return subject_of(self.gt_name)


def subject_of(name: str) -> str:
    """Subject part of a sequence name: everything before the last ``_``.

    Args:
        name: ``<subject>_<sentence>`` stem, e.g. ``FaceTalk_170809_00138_TA_sentence21``.
    Returns:
        The subject, e.g. ``FaceTalk_170809_00138_TA`` (``F2`` for ``F2_e37``).
    Raises:
        BadInputError: the name has no ``_``.
    """
    subject, sep, sentence = name.rpartition("_")
    if not sep or not subject or not sentence:
        raise BadInputError(f"sequence name {name!r}: expected <subject>_<sentence> "
                            "(e.g. F2_e37 or FaceTalk_170809_00138_TA_sentence21)")
    return subject


def find_motion_files(directory: str | Path) -> dict[str, Path]:
    """List the vertex files (``.npy`` / ``.npz``) directly inside a directory.

    Args:
        directory: folder to scan (not recursive).
    Returns:
        {stem: path}, sorted by stem.
    Raises:
        MissingFileError: the directory does not exist.
        BadInputError: it holds no vertex file, or one stem exists as both .npy and .npz.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingFileError(f"{directory}: directory not found")
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix not in MOTION_SUFFIXES or not path.is_file():
            continue
        if path.stem in found:
            raise BadInputError(f"{directory}: {path.stem} exists as both .npy and .npz; "
                                "keep one")
        found[path.stem] = path
    if not found:
        raise BadInputError(f"{directory}: no .npy or .npz vertex files")
    return dict(sorted(found.items()))


def parse_prediction_name(stem: str, gt_names: Iterable[str]) -> tuple[str, str | None] | None:
    """Find the ground truth and condition a prediction file stem refers to.

    Args:
        stem: prediction file name without extension.
        gt_names: the known ground-truth stems.
    Returns:
        (gt_name, condition or None), or None when no ground truth matches or the suffix after
        it is not ``[_condition_<X>][_pred]``.
    """
    candidates = [g for g in gt_names if stem == g or stem.startswith(g + "_")]
    if not candidates:
        return None
    gt = max(candidates, key=len)
    rest = stem[len(gt) + 1:]
    if rest == _PRED:
        rest = ""
    elif rest.endswith("_" + _PRED):
        rest = rest[: -len(_PRED) - 1]
    if not rest:
        return gt, None
    if rest.startswith(_CONDITION) and len(rest) > len(_CONDITION):
        return gt, rest[len(_CONDITION):]
    return None


def match_predictions(pred_files: dict[str, Path], gt_names: Sequence[str],
                      expected: Sequence[str] | None = None) -> list[Match]:
    """Pair every prediction file with a ground-truth sequence.

    Args:
        pred_files: {stem: path} of the predictions (see :func:`find_motion_files`).
        gt_names: stems of the available ground-truth sequences.
        expected: optional ground-truth stems that must each have at least one prediction
            (e.g. the test split); None checks only the predictions.
    Returns:
        Matches sorted by (gt_name, condition).
    Raises:
        BadInputError: one message listing every prediction without ground truth (with the
            reason), every duplicate (gt, condition) pair, and every expected sequence that has
            no ground-truth file or no prediction.
    """
    gt_set = set(gt_names)
    problems: list[str] = []
    matches: dict[tuple[str, str | None], Match] = {}
    for stem, path in pred_files.items():
        parsed = parse_prediction_name(stem, gt_set)
        if parsed is None:
            prefixes = [g for g in gt_set if stem.startswith(g + "_")]
            if prefixes:
                why = (f"unrecognised suffix after {max(prefixes, key=len)} (allowed: "
                       "_condition_<X>, _pred)")
            else:
                guess = stem.split("_" + _CONDITION, 1)[0].removesuffix("_" + _PRED)
                why = f"no ground truth named {guess}"
            problems.append(f"prediction {path.name}: {why}")
            continue
        key = parsed
        if key in matches:
            problems.append(f"predictions {matches[key].pred_path.name} and {path.name} both "
                            f"map to {key[0]} with condition {key[1]}")
            continue
        matches[key] = Match(path, *parsed)
    if expected is not None:
        predicted = {gt for gt, _ in matches}
        no_gt = [e for e in expected if e not in gt_set]
        no_pred = [e for e in expected if e in gt_set and e not in predicted]
        if no_gt:
            problems.append(f"{len(no_gt)} expected sequence(s) have no ground-truth file: "
                            + ", ".join(no_gt))
        if no_pred:
            problems.append(f"{len(no_pred)} ground-truth sequence(s) have no prediction: "
                            + ", ".join(no_pred))
    if problems:
        raise BadInputError("cannot pair predictions with ground truth:\n  "
                            + "\n  ".join(problems))
    return [matches[k] for k in sorted(matches, key=lambda k: (k[0], k[1] or ""))]


def load_vertex_file(path: str | Path, n_vertices: int | None = None) -> np.ndarray:
    """Load a vertex sequence from ``.npy`` or ``.npz`` (no pickles): :func:`avguide.io.load_vertices`.

    ``.npz`` files must hold a ``vertices`` array or exactly one array.

    Args:
        path: the file.
        n_vertices: expected V; None infers it (a (T, 3V) array gives V = 3V / 3).
    Returns:
        (T, V, 3) float32 array.
    Raises:
        MissingFileError: the file does not exist.
        BadInputError: unreadable, wrong shape, wrong V, not floating point, or NaN/inf
            (the message names the file and the first bad frame).
    """
    from avguide.io import load_vertices

    return load_vertices(path, n_vertices)


def check_vertices(arr: np.ndarray, source: str) -> None:
    """Raise one clear error unless ``arr`` is (T, V, 3) with T > 0 and only finite values.

    Args:
        arr: the vertex sequence.
        source: file or sequence name used in the message.
    Raises:
        BadInputError: wrong shape, or NaN/inf (counting the bad frames, naming the first).
    """
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0:
        raise BadInputError(f"{source}: expected vertices of shape (T, V*3) or (T, V, 3) with "
                            f"T > 0, got {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=(1, 2))  # (T,)
    if bad.any():
        raise BadInputError(f"{source}: {int(bad.sum())} frame(s) contain NaN or inf (first: "
                            f"frame {int(np.argmax(bad))})")
