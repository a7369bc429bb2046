"""Trained experts from stage-1 runs, and the evaluation reader built from a visual-only one.

A stage-1 run (:mod:`avguide.train.expert`) saves, in every checkpoint's ``meta.json``, the
expert's hyper-parameters (``expert``), its tokeniser (``tokenizer``: "char" or "spm") and its
video settings (``video``: crop size and camera rule), as :func:`expert_meta` builds them, and
once per run the render assets (``RUN/render_assets.npz``: faces, lip indices, albedo).
:func:`load_trained_expert` rebuilds the expert from those; :func:`load_reader` wraps a
visual-only one as the evaluation reader::

    reader = load_reader("runs/reader")                 # greedy CTC
    texts = reader([verts_a, verts_b], fps=30.0)        # [(T, V, 3) float32, ...] -> [str, ...]

The reader renders every sequence with the lip camera placed from the **time-average of that
sequence's vertices** (it receives no template; the same rule for ground truth and predictions;
for a static face the camera equals the template's), quantises the gray frames to uint8 like
the training cache, and decodes a batch at a time: greedy CTC or joint CTC/attention beam search.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from avguide.errors import BadInputError
from avguide.lipreader.beam_search import ctc_greedy, recognize
from avguide.lipreader.config import ExpertConfig, modality_name
from avguide.lipreader.lipvideo import RenderAssets, dequantize, load_assets
from avguide.lipreader.model import LipReadingExpert, build_expert
from avguide.lipreader.render_cache import render_video
from avguide.lipreader.tokenizers import CharTokenizer, SentencePieceTokenizer
from avguide.checkpoint import load_checkpoint

Decode = Literal["greedy", "beam"]


def make_tokenizer(name: str) -> CharTokenizer | SentencePieceTokenizer:
    """"char" -> :class:`CharTokenizer`, "spm" -> Auto-AVSR's :class:`SentencePieceTokenizer`.

    Raises:
        BadInputError: another name.
    """
    if name == "char":
        return CharTokenizer()
    if name == "spm":
        return SentencePieceTokenizer()
    raise BadInputError(f"tokenizer: {name!r}; allowed: char, spm")


def expert_meta(cfg: ExpertConfig, tokenizer: str, crop: int, camera: str) -> dict:
    """What a stage-1 checkpoint's ``meta.json`` says about its expert, for
    :func:`load_trained_expert`: {"expert": hyper-parameters, "tokenizer": "char" | "spm",
    "video": {"crop", "camera", "fps": 25}}."""
    return {"expert": dataclasses.asdict(cfg), "tokenizer": tokenizer,
            "video": {"crop": int(crop), "camera": camera, "fps": 25}}


@dataclass
class TrainedExpert:
    """An expert loaded from a stage-1 run (eval mode, CPU).

    Attributes:
        model: the expert. tokenizer: its tokeniser. crop: video crop side (pixels).
        camera: camera rule it was trained with. assets: render assets of its dataset.
        meta: the checkpoint's meta.json (epoch, step, metrics, ``config``).
        checkpoint: the checkpoint directory.
    """

    model: LipReadingExpert
    tokenizer: CharTokenizer | SentencePieceTokenizer
    crop: int
    camera: str
    assets: RenderAssets
    meta: dict
    checkpoint: Path


def expert_from_meta(meta: dict) -> LipReadingExpert:
    """The (untrained) expert a stage-1 checkpoint's meta describes (its ``expert`` settings).

    Checkpoints saved before the expert config said "video" / "audio" name the modality "v" / "a":
    they load as today's names (:func:`avguide.lipreader.config.modality_name`).

    Raises:
        KeyError / TypeError / ValueError: settings missing or malformed (the caller names the file).
    """
    e = dict(meta["expert"])
    for k in ("visual_widths", "audio_widths"):
        e[k] = tuple(e[k])
    if "modality" in e:
        e["modality"] = modality_name(e["modality"])
    return build_expert(ExpertConfig(**e))


def load_trained_expert(run_or_ckpt: str | Path, which: str = "best") -> TrainedExpert:
    """Rebuild a stage-1 expert.

    Args:
        run_or_ckpt: a run directory (its ``which`` checkpoint; "best" falls back to "last"),
            a checkpoint directory, or a shipped lip reader's name (``expert-av``, ``reader``).
        which: "best" (lowest validation CER) or "last".
    Returns:
        :class:`TrainedExpert` in eval mode.
    Raises:
        MissingFileError: no checkpoint or no render assets. BadInputError: not a stage-1
            expert checkpoint, or weights that do not fit its config.
    """
    from avguide.pretrained import resolve

    state, meta, ckpt = load_checkpoint(resolve(run_or_ckpt), which)
    if not all(k in meta for k in ("expert", "tokenizer", "video")):
        raise BadInputError(f"{ckpt}: not a stage-1 expert checkpoint (meta.json lacks expert/tokenizer/video)")
    try:
        model = expert_from_meta(meta)
        crop, camera = int(meta["video"]["crop"]), str(meta["video"]["camera"])
    except (TypeError, KeyError, ValueError) as err:
        raise BadInputError(f"{ckpt / 'meta.json'}: corrupt expert settings ({type(err).__name__}: {err})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise BadInputError(f"{ckpt}: weights do not fit the saved expert config ({str(err)[:300]})") from None
    assets_path = ckpt / "render_assets.npz"
    if not assets_path.is_file():
        assets_path = ckpt.parent / "render_assets.npz"
    return TrainedExpert(model.eval(), make_tokenizer(meta["tokenizer"]), crop, camera, load_assets(assets_path),
                         meta, ckpt)


def decode_batch(expert: LipReadingExpert, encoded, tokenizer, decode: Decode = "greedy",
                 beam_size: int = 10, ctc_weight: float = 0.1, ctc_prune: float | None = None,
                 length_bonus: float = 0.0) -> list[str]:
    """Texts of an encoded batch.

    Args:
        expert: the model (eval mode). encoded: ``expert.encode(...)`` output for B utterances.
        tokenizer: decodes ids to text.
        decode: "greedy" (best-path CTC) or "beam" (joint CTC/attention beam search).
        beam_size, ctc_weight, ctc_prune, length_bonus: beam search settings (see
            :func:`avguide.lipreader.beam_search.beam_search`).
    Returns:
        B strings.
    """
    if decode == "greedy":
        ids = ctc_greedy(expert.ctc_log_probs(encoded), encoded.lengths, expert.blank)
    else:
        ids = [h.tokens(expert.sos, expert.eos) for h in recognize(expert, encoded, beam_size, ctc_weight, ctc_prune,
                                                                    length_bonus)]
    return [tokenizer.decode(i) for i in ids]


class LipReader:
    """The evaluation reader: ``reader(list of (T, V, 3) arrays, fps) -> list of str``.

    Args:
        expert: a visual-only :class:`TrainedExpert`.
        decode: "greedy" or "beam". beam_size, ctc_weight, ctc_prune, length_bonus: beam settings (see
            :func:`avguide.lipreader.beam_search.beam_search`).
        batch: sequences rendered and decoded together.
    Raises:
        BadInputError: an audio-visual expert, or bad decode settings.
    """

    def __init__(self, expert: TrainedExpert, decode: Decode = "greedy", beam_size: int = 10,
                 ctc_weight: float = 0.1, batch: int = 8, ctc_prune: float | None = None, length_bonus: float = 0.0):
        if expert.model.cfg.modality != "video":
            raise BadInputError(f"{expert.checkpoint}: the evaluation reader must be visual-only "
                                "(train it with --modality video)")
        bad_prune = ctc_prune is not None and not (0 < ctc_prune < 1 and ctc_weight > 0)
        if (decode not in ("greedy", "beam") or beam_size < 1 or batch < 1 or not 0 <= ctc_weight <= 1 or bad_prune
                or not math.isfinite(length_bonus)):
            raise BadInputError(f"reader: decode must be greedy or beam, beam_size and batch >= 1, ctc_weight in "
                                f"[0, 1], ctc_prune in (0, 1) with ctc_weight > 0, length_bonus finite; got "
                                f"{decode!r}, {beam_size}, {batch}, {ctc_weight}, {ctc_prune}, {length_bonus}")
        self.expert, self.decode, self.beam_size, self.ctc_weight, self.batch = expert, decode, beam_size, ctc_weight, batch
        self.ctc_prune, self.length_bonus = ctc_prune, length_bonus

    def videos(self, sequences: list[np.ndarray], fps: float) -> list[np.ndarray]:
        """uint8 lip videos (T25, c, c) of vertex sequences, camera from each sequence's mean."""
        out = []
        for seq in sequences:
            arr = np.asarray(seq, dtype=np.float32)
            if arr.ndim != 3 or arr.shape[1:] != (self.expert.assets.n_vertices, 3) or arr.shape[0] < 1:
                raise BadInputError(f"reader: expected (T, {self.expert.assets.n_vertices}, 3) vertex arrays, "
                                    f"got shape {arr.shape}")
            out.append(render_video(arr, fps, self.expert.assets, self.expert.crop, "sequence_mean"))
        return out

    def read_videos(self, videos: list[np.ndarray]) -> list[str]:
        """Texts of uint8 lip videos (T25, c, c), decoded ``batch`` at a time."""
        texts: list[str] = []
        model = self.expert.model
        for s in range(0, len(videos), self.batch):
            video, lengths = dequantize(videos[s: s + self.batch])
            with torch.no_grad():
                enc = model.encode(video, lengths)
                texts += decode_batch(model, enc, self.expert.tokenizer, self.decode, self.beam_size, self.ctc_weight,
                                      self.ctc_prune, self.length_bonus)
        return texts

    def __call__(self, sequences: list[np.ndarray], fps: float) -> list[str]:
        """One hypothesis per vertex sequence ((T, V, 3) float arrays at ``fps``)."""
        if fps <= 0:
            raise BadInputError(f"reader: fps must be > 0, got {fps}")
        return self.read_videos(self.videos(sequences, fps))


def load_reader(run_or_ckpt: str | Path, *, decode: Decode = "greedy", beam_size: int = 10,
                ctc_weight: float = 0.1, batch: int = 8, which: str = "best",
                ctc_prune: float | None = None, length_bonus: float = 0.0) -> LipReader:
    """The evaluation reader of a visual-only stage-1 run (see :class:`LipReader`).

    Raises:
        MissingFileError / BadInputError: see :func:`load_trained_expert` and :class:`LipReader`.
    """
    return LipReader(load_trained_expert(run_or_ckpt, which), decode, beam_size, ctc_weight, batch, ctc_prune,
                     length_bonus)
