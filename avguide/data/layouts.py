"""Discover a dataset on disk: which layout it is, its recordings, templates, regions, splits.

Three layouts share one shape (FaceFormer/CodeTalker conventions)::

    ROOT/wav/<Subject>_sentenceNN.wav  ROOT/vertices_npy/<same>.npy   (VOCASET, 60 fps, use [::2])
    ROOT/wav/F2_e01.wav                ROOT/vertices_npy/F2_e01.npy   (BIWI, 25 fps)
    ROOT/templates.pkl {subject: (V,3)}  ROOT/regions/*.txt  ROOT/sentencestext/<Subject>.txt
    ROOT/manifest.json                                                  (synthetic: fps, splits)

Scanning is cheap (names and existence only); contents are checked when a sample is loaded
(:mod:`avguide.data.samples`). A recording whose wav or vertex file is missing is skipped with a
warning and counted (``DatasetIndex.skipped``), or is an error with ``strict=True``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from avguide.data import splits
from avguide.errors import BadInputError, MissingFileError
from avguide.io import load_faces, load_indices, load_json, read_bytes, safe_load_pickle

log = logging.getLogger(__name__)

Layout = Literal["vocaset", "biwi", "synthetic"]

MAX_FPS = 1000
"""Highest motion frame rate a manifest may state."""
_VOCASET_NAME = re.compile(r"^(?P<subject>.+)_sentence(?P<num>\d+)$")
_BIWI_NAME = re.compile(r"^(?P<subject>[FM]\d+)_e(?P<num>\d+)$")


@dataclass(frozen=True)
class SampleRef:
    """One recording: where its files are and which split it belongs to."""

    name: str                 # file stem, e.g. "FaceTalk_170809_00138_TA_sentence21" or "F2_e37"
    subject: str
    sentence: int             # 1-based sentence number
    wav: Path
    vertices: Path
    split: str | None         # one of splits.SPLIT_NAMES, or None (in no split)
    text: str | None          # transcript, if the dataset has one


@dataclass
class DatasetIndex:
    """A scanned dataset. Vertex arrays are loaded lazily by :func:`avguide.data.samples.load_sample`."""

    root: Path
    layout: Layout
    fps: float                          # frame rate of vertex sequences as loaded (after stride)
    stride: int                         # temporal stride applied to the stored arrays (VOCASET: 2)
    templates: dict[str, np.ndarray]    # subject -> (V,3) float32
    train_subjects: list[str]           # one-hot style order of the animators
    samples: list[SampleRef]
    regions: dict[str, np.ndarray] = field(default_factory=dict)   # 'lips', 'upper_face', ... int64
    faces: np.ndarray | None = None     # (F,3) int64 if the dataset ships its topology
    audio_strict: bool = False          # wavs must already be 16 kHz mono (synthetic datasets)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (file, reason)
    manifest: dict | None = None

    @property
    def n_vertices(self) -> int:
        """Vertices per mesh (from the templates)."""
        return int(next(iter(self.templates.values())).shape[0])

    def split(self, name: str) -> list[SampleRef]:
        """Recordings of one split ("train", "val", "test", "test_a", "test_b")."""
        if name not in splits.SPLIT_NAMES:
            raise BadInputError(f"unknown split {name!r}; allowed: {', '.join(splits.SPLIT_NAMES)}")
        return [s for s in self.samples if s.split == name]

    def subject_index(self, subject: str) -> int:
        """Position of a training subject in the style one-hot, or -1 for an unseen subject."""
        return self.train_subjects.index(subject) if subject in self.train_subjects else -1


def open_dataset(root: str | Path, layout: Layout | Literal["auto"] = "auto", *,
                 strict: bool = False) -> DatasetIndex:
    """Scan a dataset directory.

    Args:
        root: the dataset directory (contains ``wav/``, ``vertices_npy/``, ``templates.pkl``).
        layout: "vocaset", "biwi", "synthetic" or "auto" (synthetic if ``manifest.json`` says so,
            else from the file names).
        strict: a recording with a missing wav/vertex partner or an unparsable name is an error
            instead of a skipped file with a warning.
    Returns:
        The :class:`DatasetIndex`.
    Raises:
        MissingFileError: the directory, ``wav/``, ``vertices_npy/`` or ``templates.pkl`` is missing.
        BadInputError: an unknown layout, no usable recording, or a corrupt ``manifest.json``,
            ``templates.pkl``, ``faces.npy`` or region file (``regions/*.txt``, indices checked
            against the templates' vertex count), each named.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"{root}: dataset directory not found")
    for sub in ("wav", "vertices_npy"):
        if not (root / sub).is_dir():
            raise MissingFileError(f"{root / sub}: missing (expected the VOCASET/BIWI layout "
                                   "wav/ + vertices_npy/ + templates.pkl)")
    manifest = _read_manifest(root)
    if layout == "auto":
        layout = "synthetic" if manifest is not None else _guess_layout(root)
    if layout not in ("vocaset", "biwi", "synthetic"):
        raise BadInputError(f"unknown layout {layout!r}; allowed: auto, vocaset, biwi, synthetic")
    if layout == "synthetic" and manifest is None:
        raise MissingFileError(f"{root / 'manifest.json'}: missing (needed for the synthetic layout)")

    templates = _read_templates(root / "templates.pkl")
    skipped: list[tuple[str, str]] = []
    pattern = _BIWI_NAME if layout == "biwi" else _VOCASET_NAME
    stems_wav = {p.stem: p for p in (root / "wav").glob("*.wav")}
    stems_npy = {p.stem: p for p in (root / "vertices_npy").glob("*.npy")}
    for stem in sorted(set(stems_wav) ^ set(stems_npy)):
        missing = "vertices_npy" if stem in stems_wav else "wav"
        skipped.append((str(stems_wav.get(stem) or stems_npy[stem]), f"no partner in {missing}/"))

    if layout == "synthetic":
        fps, stride = float(manifest["fps"]), 1
        split_of = {name: sp for sp, names in manifest["splits"].items() for name in names}
        train_subjects = list(manifest["train_subjects"])
    elif layout == "vocaset":
        fps, stride = 30.0, 2
        split_of = None
        train_subjects = list(splits.VOCASET_TRAIN)
    else:
        fps, stride = 25.0, 1
        split_of = None
        train_subjects = list(splits.BIWI_TRAIN)

    transcripts = _read_transcripts(root)
    samples: list[SampleRef] = []
    for stem in sorted(set(stems_wav) & set(stems_npy)):
        m = pattern.match(stem)
        if m is None:
            skipped.append((str(stems_wav[stem]), f"name does not match the {layout} pattern"))
            continue
        subject, num = m["subject"], int(m["num"])
        if subject not in templates:
            skipped.append((str(stems_npy[stem]), f"subject {subject} has no template in templates.pkl"))
            continue
        if split_of is not None:
            split = split_of.get(stem)
        elif layout == "vocaset":
            split = splits.vocaset_split(subject, num)
        else:
            split = splits.biwi_split(subject, num)
        text = transcripts.get(subject, {}).get(num) or transcripts.get("*", {}).get(num)
        samples.append(SampleRef(stem, subject, num, stems_wav[stem], stems_npy[stem], split, text))

    if strict and skipped:
        f, why = skipped[0]
        raise BadInputError(f"{f}: {why} ({len(skipped)} problem file(s) in {root})")
    if not samples:
        why = f"; {len(skipped)} file(s) skipped, e.g. {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
        raise BadInputError(f"{root}: no usable recordings (wav/*.wav paired with vertices_npy/*.npy){why}")
    if skipped:
        log.warning("%s: skipped %d file(s), e.g. %s: %s", root, len(skipped), *skipped[0])

    n_vertices = next(iter(templates.values())).shape[0]
    faces = None
    if (root / "faces.npy").exists():
        faces = load_faces(root / "faces.npy", n_vertices)
    return DatasetIndex(root=root, layout=layout, fps=fps, stride=stride, templates=templates,
                        train_subjects=train_subjects, samples=samples, regions=_read_regions(root, n_vertices),
                        faces=faces, audio_strict=(layout == "synthetic"), skipped=skipped,
                        manifest=manifest)


def _read_manifest(root: Path) -> dict | None:
    """``manifest.json`` checked: fps a positive number, splits {split: [names]}, train_subjects
    [names]; None if there is none."""
    path = root / "manifest.json"
    if not path.exists():
        return None
    manifest = load_json(path, "manifest")
    for key in ("fps", "splits", "train_subjects"):
        if key not in manifest:
            raise BadInputError(f"{path}: missing key {key!r}")
    fps = manifest["fps"]
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 1 <= fps <= MAX_FPS:
        raise BadInputError(f"{path}: 'fps' must be a number of frames per second in [1, {MAX_FPS}], got {fps!r}")
    split_map = manifest["splits"]
    if not isinstance(split_map, dict):
        raise BadInputError(f"{path}: 'splits' must be an object {{split: [recording names]}}, got "
                            f"{type(split_map).__name__} {_short(split_map)}")
    for name, names in split_map.items():
        if name not in splits.SPLIT_NAMES:
            raise BadInputError(f"{path}: unknown split {name!r} in 'splits'; allowed: "
                                f"{', '.join(splits.SPLIT_NAMES)}")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BadInputError(f"{path}: splits.{name} must be a list of recording names, got {_short(names)}")
    subjects = manifest["train_subjects"]
    if not isinstance(subjects, list) or not all(isinstance(n, str) for n in subjects):
        raise BadInputError(f"{path}: 'train_subjects' must be a list of subject names, got {_short(subjects)}")
    return manifest


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _guess_layout(root: Path) -> Layout:
    for p in (root / "wav").glob("*.wav"):
        if _BIWI_NAME.match(p.stem):
            return "biwi"
        if _VOCASET_NAME.match(p.stem):
            return "vocaset"
    raise BadInputError(f"{root}: cannot tell the layout from the file names in wav/ "
                        "(expected <Subject>_sentenceNN.wav or F2_e01.wav); pass the layout")


def _read_templates(path: Path) -> dict[str, np.ndarray]:
    obj = safe_load_pickle(path, "templates pickle")
    if not isinstance(obj, dict) or not obj:
        raise BadInputError(f"{path}: expected a non-empty dict {{subject: (V,3) array}}, got {_short(obj)}")
    out: dict[str, np.ndarray] = {}
    n_vertices = None
    for subject, arr in obj.items():
        if not isinstance(subject, (str, bytes)):
            raise BadInputError(f"{path}: subject names must be strings, got {_short(subject)}")
        if isinstance(subject, bytes):  # Python-2 pickles
            subject = subject.decode("latin1")
        kind = arr.dtype.kind if isinstance(arr, np.ndarray) else None
        if kind not in ("f", "i", "u") and not (isinstance(arr, (list, tuple)) and _numeric_nested(arr)):
            raise BadInputError(f"{path}: template of {subject!r} is "
                                f"{f'an array of dtype {arr.dtype}' if kind else type(arr).__name__ + ' ' + _short(arr)}"
                                ", expected a (V, 3) float array")
        arr = np.asarray(arr, dtype=np.float32)
        if arr.ndim == 1 and arr.size % 3 == 0 and arr.size:
            arr = arr.reshape(-1, 3)
        if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] == 0:
            raise BadInputError(f"{path}: template of {subject!r} has shape {arr.shape}, expected (V, 3)")
        if not np.isfinite(arr).all():
            raise BadInputError(f"{path}: template of {subject!r} contains NaN or inf")
        if n_vertices is not None and arr.shape[0] != n_vertices:
            raise BadInputError(f"{path}: template of {subject!r} has {arr.shape[0]} vertices, "
                                f"others have {n_vertices}")
        n_vertices = arr.shape[0]
        out[subject] = arr
    return out


def _numeric_nested(value: list | tuple) -> bool:
    """A (nested) list of numbers that numpy turns into a float array."""
    try:
        return np.asarray(value).dtype.kind in ("f", "i", "u")
    except (ValueError, TypeError):
        return False


def _read_transcripts(root: Path) -> dict[str, dict[int, str]]:
    """``sentencestext/<Subject>.txt`` (line N = sentence N); ``sentencestext/all.txt`` for all."""
    folder = root / "sentencestext"
    out: dict[str, dict[int, str]] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.txt")):
        lines = read_bytes(path, "transcript file").decode("utf-8", errors="replace").splitlines()
        key = "*" if path.stem == "all" else path.stem
        out[key] = {i + 1: line.strip() for i, line in enumerate(lines) if line.strip()}
    return out


_REGION_ALIASES = {"lips": ("lips", "lve"), "upper_face": ("upper_face", "fdd")}


def _read_regions(root: Path, n_vertices: int) -> dict[str, np.ndarray]:
    """``regions/*.txt`` index lists (", "- or whitespace-separated); lve.txt/fdd.txt (BIWI) are
    read as 'lips'/'upper_face'; FLAME_masks.pkl (VOCASET) gives 'lips' and forehead+eye_region.
    Every index is checked against the templates' ``n_vertices`` now, naming the file, rather
    than failing inside a loss an epoch later."""
    regions: dict[str, np.ndarray] = {}
    folder = root / "regions"
    if folder.is_dir():
        for path in sorted(folder.glob("*.txt")):
            regions[path.stem] = load_indices(path, n_vertices, f"'{path.stem}' vertex region")
    for canonical, names in _REGION_ALIASES.items():
        for n in names:
            if canonical not in regions and n in regions:
                regions[canonical] = regions[n]
    masks = root / "FLAME_masks.pkl"
    if masks.exists():
        m = safe_load_pickle(masks, "FLAME masks pickle")
        if not isinstance(m, dict):
            raise BadInputError(f"{masks}: expected a dict {{region: vertex indices}}, got {_short(m)}")
        mask = {k: _mask_indices(masks, k, m[k], n_vertices)
                for k in ("lips", "forehead", "eye_region") if k in m}
        if "lips" in mask and "lips" not in regions:
            regions["lips"] = mask["lips"]
        if "upper_face" not in regions and "forehead" in mask and "eye_region" in mask:
            regions["upper_face"] = np.union1d(mask["forehead"], mask["eye_region"])
    return regions


def _mask_indices(path: Path, key: str, value: object, n_vertices: int) -> np.ndarray:
    """One region of FLAME_masks.pkl as (R,) int64 in [0, n_vertices)."""
    arr = np.asarray(value) if isinstance(value, (np.ndarray, list, tuple)) else None
    if arr is None or arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in ("i", "u"):
        raise BadInputError(f"{path}: region {key!r} must be a non-empty list of integer vertex "
                            f"indices, got {_short(value)}")
    if arr.min() < 0 or arr.max() >= n_vertices:
        raise BadInputError(f"{path}: region {key!r} holds index {int(arr.min() if arr.min() < 0 else arr.max())}; "
                            f"indices must lie in [0, {n_vertices})")
    return arr.astype(np.int64)
