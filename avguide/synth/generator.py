"""``avguide synth``: generate the synthetic talking-head benchmark (VOCASET layout).

For each subject: an identity (random mixture of CC0 shape targets on the MakeHuman head), an
espeak-ng voice and a speaking style. For each of its sentences: speech with timed phonemes ->
coarticulated ARKit weights (+ blinks, brows) -> rigged vertices. Output layout::

    OUT/wav/<Subject>_sentenceNN.wav          16 kHz mono PCM16
    OUT/vertices_npy/<same>.npy               (T, V*3) float32, metres, at cfg.fps
    OUT/blendshapes_npy/<same>.npy            (T, 52) float32, ARKit order (avguide.assets.arkit)
    OUT/alignments/<same>.json                text, phones [ipa, start s, end s], visemes
    OUT/templates.pkl                         {subject: (V,3) float32}
    OUT/sentencestext/<Subject>.txt           line N = sentence N
    OUT/regions/<name>.txt                    ", "-separated vertex indices (lips, upper_face, ...)
    OUT/faces.npy                             (F,3) int32
    OUT/manifest.json                         config, versions, subjects, splits

Everything derives from ``cfg.seed`` through per-subject and per-utterance generators, so the
output is byte-identical for the same config whatever the number of worker processes.
``realism.enabled=true`` adds token-to-token variability of the articulation (visual lead over
the audio, undershoot of short vowels, target scatter; :mod:`avguide.synth.realism`), drawn from
the same per-utterance generators; it is off by default, and then the output (manifest
included) is what it was before the option existed.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing as mp
import os
import pickle
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

import avguide
from avguide.audio.io import save_wav
from avguide.config import config_to_dict
from avguide.data.splits import heldout_sentences, synthetic_subject_roles
from avguide.errors import BadInputError, MissingFileError
from avguide.io import (check_output_dir, load_json, read_text, save_npy_atomic, write_bytes_atomic, write_json_atomic,
                        write_text_atomic)
from avguide.synth.realism import RealismConfig


MAX_SUBJECTS = 999
"""Most subjects a synthetic set may have (``Synth001`` ...)."""


@dataclass
class SynthConfig:
    """Configuration of the synthetic benchmark."""

    subjects: int = 12               # 12 -> 8 train / 2 val / 2 test, like VOCASET
    sentences: int = 40              # per subject; val/test subjects are scored on the 2nd half
    fps: int = 30                    # motion frame rate (25 gives a BIWI-like set)
    seed: int = 0
    protocol: Literal["disjoint", "vocaset"] = "disjoint"
    speakers_per_sentence: float = 2.0   # average reuse of a sentence text across subjects
    identity_strength: float = 1.0   # scale of the random identity shape mixture
    rate_wpm_min: int = 150          # speaking rates are drawn per subject in [min, max] words
    rate_wpm_max: int = 200          # per minute (a wider range makes a corpus for lip readers)
    workers: int = 0                 # worker processes; 0 = all cores
    # a dataset whose sentences this one must never speak (e.g. a corpus to pretrain a lip
    # reader on, with another seed, kept apart from the benchmark's val/test sentences)
    exclude_texts_from: str = ""
    # token-to-token variability (visual lead, undershoot, target scatter; avguide.synth.realism),
    # off by default so that the default benchmark stays byte-identical: realism.enabled=true
    realism: RealismConfig = field(default_factory=RealismConfig)

    def check(self) -> list[str]:
        errors = []
        if not 3 <= self.subjects <= MAX_SUBJECTS:
            errors.append(f"subjects: need at least 3 (train/val/test) and at most {MAX_SUBJECTS}, got {self.subjects}")
        if not 2 <= self.sentences <= 99:
            errors.append(f"sentences: must be in 2..99, got {self.sentences}")
        if not 10 <= self.fps <= 120:
            errors.append(f"fps: must be in 10..120, got {self.fps}")
        if self.speakers_per_sentence < 1.0:
            errors.append(f"speakers_per_sentence: must be >= 1, got {self.speakers_per_sentence}")
        if not 0.0 <= self.identity_strength <= 3.0:
            errors.append(f"identity_strength: must be in [0, 3], got {self.identity_strength}")
        if not 80 <= self.rate_wpm_min <= self.rate_wpm_max <= 450:
            errors.append(f"rate_wpm_min/max: need 80 <= min <= max <= 450, got "
                          f"{self.rate_wpm_min}..{self.rate_wpm_max}")
        if self.workers < 0:
            errors.append(f"workers: must be >= 0, got {self.workers}")
        return errors


def subject_names(n: int) -> list[str]:
    """Names of the synthetic subjects, ``Synth01`` .. ``SynthNN``."""
    return [f"Synth{i + 1:02d}" for i in range(n)]


def assign_sentences(cfg: SynthConfig, roles: list[str]) -> list[list[int]]:
    """Indices into the sentence pool for every subject's sentences 1..n.

    Slots are grouped; each group draws from its own pool of ``ceil(slots / speakers_per_sentence)``
    texts, subjects taking rotating windows (distinct within a subject, shared across subjects).
    ``disjoint``: three groups, so no val/test scoring sentence is ever spoken in training and val
    and test never share one: (train subjects + the unscored first half of val/test subjects),
    (val subjects' second half), (test subjects' second half). ``vocaset``: one group.

    Returns:
        ``pool_index[s][j]`` = pool index of subject s's sentence j+1 (a global pool index).
    """
    n = cfg.sentences
    held = set(heldout_sentences(n))
    groups: dict[str, list[tuple[int, int]]] = {}
    for s, role in enumerate(roles):
        for j in range(n):
            key = "all" if cfg.protocol == "vocaset" else (role if (j + 1) in held and role != "train" else "train")
            groups.setdefault(key, []).append((s, j))
    out = [[-1] * n for _ in roles]
    base = 0
    for key in sorted(groups):
        slots = groups[key]
        per_subject: dict[int, list[int]] = {}
        for s, j in slots:
            per_subject.setdefault(s, []).append(j)
        longest = max(len(v) for v in per_subject.values())
        pool = max(longest, math.ceil(len(slots) / cfg.speakers_per_sentence))
        subjects = sorted(per_subject)
        for rank, s in enumerate(subjects):
            offset = (rank * pool) // len(subjects)
            for k, j in enumerate(per_subject[s]):
                out[s][j] = base + (offset + k) % pool
        base += pool
    return out


def _excluded_texts(root: str) -> set[str]:
    """Every sentence of the dataset at ``root`` (its ``sentencestext/*.txt``), or none for "".

    Raises:
        MissingFileError: ``root`` has no ``sentencestext`` directory.
    """
    if not root:
        return set()
    folder = Path(root) / "sentencestext"
    if not folder.is_dir():
        raise MissingFileError(f"exclude_texts_from={root}: no sentencestext/ directory there")
    return {line.strip() for f in sorted(folder.glob("*.txt")) for line in read_text(f, "transcript file").splitlines()
            if line.strip()}


def _sentence_pool(n: int, seed: int, excluded: set[str]) -> list[str]:
    """The first ``n`` sentences of the seed's list that are not in ``excluded``."""
    from avguide.synth.text import generate_sentences

    count = n + len(excluded)
    while True:
        pool = [t for t in generate_sentences(count, seed) if t not in excluded]
        if len(pool) >= n:
            return pool[:n]
        count *= 2


def _utterance(job: dict) -> dict:
    """Worker: synthesise one recording and write its files. Returns its metadata."""
    from avguide.assets.head import load_head
    from avguide.speech.espeak import speak
    from avguide.speech.visemes import phoneme_to_viseme
    from avguide.synth.motion import speech_motion
    from avguide.synth.rig import apply_blendshapes

    out, name, fps = Path(job["out"]), job["name"], job["fps"]
    head = load_head()
    rng = np.random.default_rng(job["rng"])
    utt = speak(job["text"], job["voice"])
    n_frames = math.floor(utt.audio.shape[0] * fps / avguide.AUDIO_RATE)
    weights = speech_motion(utt.phones, n_frames, fps, job["style"], rng, job["realism"])  # (T,52)
    verts = apply_blendshapes(job["template"], head.blendshapes, weights)             # (T,V,3)
    save_wav(out / "wav" / f"{name}.wav", utt.audio)
    save_npy_atomic(out / "vertices_npy" / f"{name}.npy", verts.reshape(n_frames, -1).astype(np.float32))
    save_npy_atomic(out / "blendshapes_npy" / f"{name}.npy", weights.astype(np.float32))
    phones = [[p.ipa, round(p.start, 5), round(p.end, 5)] for p in utt.phones]
    visemes = "".join(phoneme_to_viseme(p.ipa) for p in utt.phones if p.ipa != "_")
    write_json_atomic(out / "alignments" / f"{name}.json",
                      {"text": job["text"], "fps": fps, "duration": round(utt.audio.shape[0] / avguide.AUDIO_RATE, 5),
                       "n_frames": n_frames, "phones": phones, "visemes": visemes})
    return {"name": name, "frames": n_frames, "seconds": utt.audio.shape[0] / avguide.AUDIO_RATE}


def generate(cfg: SynthConfig, out: str | Path, *, preview: bool = False, progress: bool = True) -> dict:
    """Generate the benchmark into ``out`` (created; existing files are overwritten).

    Args:
        cfg: validated :class:`SynthConfig`.
        out: output directory.
        preview: also write ``preview.mp4`` (a few sequences with audio) and ``visemes.png``.
        progress: show a progress bar on stderr.
    Returns:
        Summary: {"recordings", "frames", "seconds_audio", "wall_seconds", "bytes"}.
    Raises:
        BadInputError: ``out`` exists and is not a directory, is not writable, or holds
            something other than an avguide synthetic dataset.

    Re-generating over an earlier set first removes that set's files that the new one will not
    overwrite (recordings and subjects it no longer has, a preview it does not make), as listed
    in the earlier ``manifest.json``; nothing else in ``out`` is touched.
    """
    from tqdm import tqdm

    from avguide.assets.head import load_head
    from avguide.speech.espeak import sample_voice
    from avguide.synth.motion import sample_style
    from avguide.synth.rig import sample_identity

    out = check_output_dir(out, "--out")  # not empty, not a file, writable
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise BadInputError(f"--out {out}: directory is not empty and is not an avguide synthetic "
                            "dataset; choose an empty or new directory")
    previous = _previous_set(out)
    start = time.perf_counter()
    head = load_head()
    names = subject_names(cfg.subjects)
    roles = synthetic_subject_roles(cfg.subjects)
    assignment = assign_sentences(cfg, roles)
    pool = _sentence_pool(1 + max(max(a) for a in assignment), cfg.seed, _excluded_texts(cfg.exclude_texts_from))

    subjects, templates, jobs = {}, {}, []
    for s, name in enumerate(names):
        rng = np.random.default_rng([cfg.seed, 1, s])
        coeffs, template = sample_identity(head, rng, strength=cfg.identity_strength)
        voice = sample_voice(rng, s, rate_wpm=(cfg.rate_wpm_min, cfg.rate_wpm_max))
        style = sample_style(rng)
        templates[name] = template.astype(np.float32)
        subjects[name] = {"role": roles[s], "voice": dataclasses.asdict(voice),
                          "style": dataclasses.asdict(style),
                          "identity": {n: round(float(c), 6) for n, c in zip(head.identity_names, coeffs)}}
        texts = [pool[k] for k in assignment[s]]
        write_text_atomic(out / "sentencestext" / f"{name}.txt", "\n".join(texts) + "\n")
        for j, text in enumerate(texts):
            jobs.append({"out": str(out), "name": f"{name}_sentence{j + 1:02d}", "text": text,
                         "voice": voice, "style": style, "template": templates[name],
                         "fps": cfg.fps, "rng": [cfg.seed, 2, s, j + 1], "realism": cfg.realism})

    _remove_stale(out, previous, {job["name"] for job in jobs}, set(names), preview)
    workers = cfg.workers or os.cpu_count() or 1
    bar = tqdm(total=len(jobs), desc="synth", unit="utt", disable=not progress, file=sys.stderr)
    results = []
    if workers == 1:
        for job in jobs:
            results.append(_utterance(job))
            bar.update()
    else:
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
            for r in ex.map(_utterance, jobs, chunksize=4):
                results.append(r)
                bar.update()
    bar.close()

    write_bytes_atomic(out / "templates.pkl", pickle.dumps(templates, protocol=4))
    save_npy_atomic(out / "faces.npy", head.faces.astype(np.int32))
    for region, idx in sorted(head.regions.items()):
        write_text_atomic(out / "regions" / f"{region}.txt", ", ".join(str(int(i)) for i in idx) + "\n")
    held = set(heldout_sentences(cfg.sentences))
    splits = {"train": [], "val": [], "test": []}
    for s, name in enumerate(names):
        for j in range(cfg.sentences):
            if roles[s] == "train" or (j + 1) in held:
                splits[roles[s]].append(f"{name}_sentence{j + 1:02d}")
    config = config_to_dict(cfg) | {"workers": None}
    if not cfg.realism.enabled:  # settings without effect; keeps the default manifest unchanged
        del config["realism"]
    manifest = {
        "generator": "avguide.synth", "avguide_version": avguide.__version__,
        "config": config,
        "fps": cfg.fps, "audio_rate": avguide.AUDIO_RATE, "n_vertices": int(head.vertices.shape[0]),
        "units": "metres", "train_subjects": [n for n, r in zip(names, roles) if r == "train"],
        "splits": splits, "subjects": subjects, "versions": _versions(),
        "recordings": {r["name"]: r["frames"] for r in results}, "preview": bool(preview),
    }
    write_json_atomic(out / "manifest.json", manifest)
    summary = {"recordings": len(results), "frames": sum(r["frames"] for r in results),
               "seconds_audio": round(sum(r["seconds"] for r in results), 2),
               "wall_seconds": round(time.perf_counter() - start, 2),
               "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file())}
    if preview:
        from avguide.synth.preview import write_preview
        write_preview(out)
    return summary


_OWN_NAME = re.compile(r"Synth\d+(_sentence\d+)?")
"""Subject and recording names :func:`generate` writes (:func:`subject_names`)."""

_RECORDING_FILES = (("wav", ".wav"), ("vertices_npy", ".npy"), ("blendshapes_npy", ".npy"), ("alignments", ".json"))
"""(folder, suffix) of the files written for each recording."""


def _previous_set(out: Path) -> dict | None:
    """What an earlier :func:`generate` wrote into ``out``, from its manifest: {"recordings",
    "subjects", "preview"}; None when there is no earlier set.

    Raises:
        BadInputError: the manifest is corrupt or was not written by this generator.
    """
    path = out / "manifest.json"
    if not path.exists():
        return None
    manifest = load_json(path, "manifest")
    if manifest.get("generator") != "avguide.synth":
        raise BadInputError(f"--out {out}: {path} was not written by avguide synth; choose an empty or "
                            "new directory")
    cfg = manifest.get("config") or {}
    names = manifest.get("recordings") or [  # manifests before "recordings" was recorded
        f"{s}_sentence{j + 1:02d}" for s in subject_names(int(cfg.get("subjects", 0)))
        for j in range(int(cfg.get("sentences", 0)))]
    subjects = manifest.get("subjects") or {}
    own = [n for n in [*names, *subjects] if not (isinstance(n, str) and _OWN_NAME.fullmatch(n))]
    if own:  # a name this generator cannot have written (e.g. a path): never delete by it
        raise BadInputError(f"{path}: lists {own[0]!r}, not a name avguide synth writes; the manifest "
                            "was edited or is corrupt")
    return {"recordings": set(names), "subjects": set(subjects), "preview": manifest.get("preview", False)}


def _remove_stale(out: Path, previous: dict | None, recordings: set[str], subjects: set[str],
                  preview: bool) -> None:
    """Delete the earlier set's files that this run will not overwrite (only names it wrote)."""
    if previous is None:
        return
    stale = [out / folder / f"{name}{suffix}" for name in sorted(previous["recordings"] - recordings)
             for folder, suffix in _RECORDING_FILES]
    stale += [out / "sentencestext" / f"{s}.txt" for s in sorted(previous["subjects"] - subjects)]
    if previous["preview"] and not preview:
        stale += [out / "preview.mp4", out / "visemes.png"]
    for path in stale:
        path.unlink(missing_ok=True)


def _versions() -> dict:
    from avguide.speech.espeak import espeak_version
    return {"numpy": np.__version__, "espeak-ng": espeak_version()}
