"""Inference: animate speech with a trained animator run.

:func:`animate_file` is ``avguide animate SPEECH.wav --checkpoint RUN``; :func:`predict_split`
writes predictions for a dataset split (for ``avguide evaluate`` and the benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from avguide import AUDIO_RATE
from avguide.audio.io import load_audio
from avguide.config import load_config
from avguide.errors import BadInputError, MissingFileError
from avguide.io import save_npy_atomic
from avguide.train.checkpoint import load_checkpoint

SILENCE_RMS = 1e-4
"""Audio quieter than this (RMS, full scale 1) is refused as silent."""


@dataclass
class LoadedAnimator:
    """A trained animator with what inference needs."""

    model: torch.nn.Module
    config: dict                      # the run's resolved config
    fps: float
    train_subjects: list[str]
    templates: dict[str, np.ndarray]  # training subjects' (V,3) templates
    faces: np.ndarray | None          # (F,3) if the dataset had a topology file
    checkpoint: Path


def load_animator(run: str | Path, which: str = "best", device: str = "cpu") -> LoadedAnimator:
    """Load a run written by ``avguide train`` (baseline or AV-guided).

    Args:
        run: run directory (or one checkpoint directory inside it).
        which: "best" (lowest validation loss) or "last".
        device: torch device.
    Raises:
        MissingFileError: not a run; BadInputError: not an animator run or weights that do not fit.
    """
    from avguide.animators import CodeTalkerConfig, FaceFormerConfig, build_animator

    state, meta, ckpt = load_checkpoint(run, which)
    cfg = meta.get("config", {})
    model_cfg, dataset = cfg.get("model"), cfg.get("dataset")
    if not isinstance(model_cfg, dict) or model_cfg.get("kind") not in ("faceformer", "codetalker") or not dataset:
        raise BadInputError(f"{ckpt}: not an animator checkpoint (no animator model config)")
    cls = FaceFormerConfig if model_cfg["kind"] == "faceformer" else CodeTalkerConfig
    mcfg = load_config(cls, base=model_cfg)
    model = build_animator(mcfg, dataset["n_vertices"], len(dataset["train_subjects"]))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BadInputError(f"{ckpt}: weights do not fit the saved config ({str(e)[:300]})") from None
    model.to(device).eval()
    run_dir = ckpt.parent
    assets = load_file(str(run_dir / "assets.safetensors")) if (run_dir / "assets.safetensors").is_file() else {}
    templates = {k.split("/", 1)[1]: v.numpy() for k, v in assets.items() if k.startswith("template/")}
    faces = assets["faces"].numpy() if "faces" in assets else None
    return LoadedAnimator(model, cfg, float(dataset["fps"]), list(dataset["train_subjects"]), templates, faces, ckpt)


def _subject_index(anim: LoadedAnimator, subject: str | None) -> int:
    if subject is None:
        return 0
    if subject not in anim.train_subjects:
        raise BadInputError(f"--subject {subject!r}: unknown; this model knows the speaking styles of "
                            f"{', '.join(anim.train_subjects)}")
    return anim.train_subjects.index(subject)


@torch.no_grad()
def animate_audio(anim: LoadedAnimator, audio: np.ndarray, template: np.ndarray, style: int) -> np.ndarray:
    """Animate one clip.

    Args:
        anim: the loaded animator.
        audio: (L,) float32 16 kHz mono.
        template: (V,3) neutral face.
        style: training-subject index of the speaking style.
    Returns:
        (T,V,3) float32 vertices at ``anim.fps``, T = round(L / 16000 * fps).
    """
    device = next(anim.model.parameters()).device
    a = torch.from_numpy(audio)[None].to(device)
    out = anim.model.generate(a, torch.tensor([a.shape[1]], device=device),
                              torch.from_numpy(np.asarray(template, np.float32))[None].to(device),
                              torch.tensor([style], device=device))
    return out[0].cpu().numpy().astype(np.float32)


def animate_file(run: str | Path, speech: str | Path, out_dir: str | Path, *, subject: str | None = None,
                 template: str | Path | None = None, video: bool = True, seed: int = 0) -> dict:
    """``avguide animate``: speech file -> vertex sequence .npy (+ mp4 with the audio).

    Args:
        run: trained animator run.
        speech: any audio file libsndfile reads, any rate or channel count (converted to 16 kHz mono).
        out_dir: output folder; writes ``<stem>.npy`` (T, V*3) and ``<stem>.mp4``.
        subject: speaking style (a training subject); its template is the face unless ``template``.
        template: optional mesh (.obj/.ply/.npy (V,3)) of the face to animate, same vertex count.
        video: also render the mp4 (needs the run's faces, or ``template`` as .obj/.ply).
        seed: torch seed (inference is deterministic; recorded for completeness).
    Returns:
        {"npy": path, "mp4": path or None, "frames": T, "fps": fps, "subject": name}.
    Raises:
        MissingFileError / BadInputError: bad run, unknown subject, silent or unreadable audio, a
            template of the wrong vertex count.
    """
    torch.manual_seed(seed)
    anim = load_animator(run)
    wav = load_audio(speech)
    rms = float(np.sqrt(np.mean(wav.astype(np.float64) ** 2)))
    if rms < SILENCE_RMS:
        raise BadInputError(f"{speech}: audio is silent (RMS {rms:.1e}); nothing to animate")
    style = _subject_index(anim, subject)
    name = anim.train_subjects[style]
    faces = anim.faces
    if template is not None:
        from avguide.data.meshfile import read_mesh

        tpath = Path(template)
        if tpath.suffix.lower() == ".npy":
            verts = np.load(tpath, allow_pickle=False) if tpath.is_file() else None
            if verts is None:
                raise MissingFileError(f"{tpath}: template not found")
            verts = verts.reshape(-1, 3)
        else:
            verts, faces = read_mesh(tpath)
        n_v = anim.config["dataset"]["n_vertices"]
        if verts.shape[0] != n_v:
            raise BadInputError(f"{tpath}: template has {verts.shape[0]} vertices, the model animates {n_v}")
        base = verts.astype(np.float32)
    else:
        if name not in anim.templates:
            raise BadInputError(f"{anim.checkpoint}: run has no template for {name}; pass --template")
        base = anim.templates[name]
    verts = animate_audio(anim, wav, base, style)  # (T, V, 3)
    out = Path(out_dir)
    stem = Path(speech).stem
    npy = out / f"{stem}.npy"
    save_npy_atomic(npy, verts.reshape(verts.shape[0], -1))
    mp4 = None
    if video:
        if faces is None:
            raise BadInputError(f"{anim.checkpoint}: the run has no mesh topology for the video; pass "
                                "--template MESH.obj/.ply or --no-video")
        from avguide.render.video import render_video

        mp4 = out / f"{stem}.mp4"
        with _temp_wav(wav) as tmp_wav:
            render_video([verts], faces, mp4, fps=anim.fps, audio_path=tmp_wav, vertex_part=_parts(verts.shape[1]),
                         captions=[f"{stem} ({name} style)"])
    return {"npy": str(npy), "mp4": str(mp4) if mp4 else None, "frames": int(verts.shape[0]),
            "fps": anim.fps, "subject": name}


def _parts(n_vertices: int):
    from avguide.assets.head import load_head

    head = load_head()
    return np.asarray(head.vertex_part) if head.vertices.shape[0] == n_vertices else None


class _temp_wav:
    """A 16 kHz copy of the (converted) audio for muxing, removed afterwards."""

    def __init__(self, wav: np.ndarray):
        self.wav = wav

    def __enter__(self) -> Path:
        import tempfile

        from avguide.audio.io import save_wav

        self.dir = tempfile.TemporaryDirectory()
        path = Path(self.dir.name) / "speech.wav"
        save_wav(path, self.wav, AUDIO_RATE)
        return path

    def __exit__(self, *exc) -> None:
        self.dir.cleanup()


@torch.no_grad()
def predict_split(run: str | Path, data: str | Path, split: str, out_dir: str | Path, *,
                  batch_size: int = 8, which: str = "best") -> list[Path]:
    """Predict every recording of a dataset split (unseen subjects in training subject 0's style;
    seen subjects in their own) and write ``<name>.npy`` files for ``avguide evaluate``.

    Returns:
        The written paths.
    """
    from avguide.data.batching import RecordingDataset, make_loader
    from avguide.data.layouts import open_dataset

    anim = load_animator(run, which)
    index = open_dataset(data)
    refs = index.split(split)
    if not refs:
        raise BadInputError(f"{data}: no recordings in split {split!r}")
    loader = make_loader(RecordingDataset(index, refs), batch_size, shuffle=False, seed=0)
    device = next(anim.model.parameters()).device
    paths = []
    for batch in loader:
        batch = batch.to(device)
        pred = anim.model.generate(batch.audio, batch.audio_lengths, batch.template, batch.subject.clamp(min=0),
                                   n_frames=batch.lengths)
        for i, name in enumerate(batch.names):
            n = int(batch.lengths[i])
            p = Path(out_dir) / f"{name}.npy"
            save_npy_atomic(p, pred[i, :n].reshape(n, -1).cpu().numpy().astype(np.float32))
            paths.append(p)
    return paths
