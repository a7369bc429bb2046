"""Previews of a synthetic benchmark, for a person to look at.

* ``preview.mp4``: a few recordings (one test, one val, one train subject) played one after the
  other, three-quarter view, with their audio.
* ``visemes.png``: the lip camera's view (what the lip reader sees) at the centre of one phone of
  each viseme class, taken from the generated data itself, with the rest pose for reference.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from avguide import AUDIO_RATE
from avguide.audio.io import load_audio, save_wav
from avguide.io import atomic_path, load_faces, load_json, load_vertices, safe_load_pickle


def _pick_recordings(manifest: dict, n: int) -> list[str]:
    picks = []
    for split in ("test", "val", "train"):
        names = manifest["splits"].get(split, [])
        if names:
            picks.append(names[0])
    return picks[:n]


def write_preview(root: str | Path, n_sequences: int = 3) -> tuple[Path, Path]:
    """Write ``preview.mp4`` and ``visemes.png`` into a generated dataset.

    Args:
        root: a dataset written by :func:`avguide.synth.generator.generate`.
        n_sequences: recordings concatenated in the video.
    Returns:
        (video path, sheet path).
    """
    from avguide.render.video import render_video

    root = Path(root)
    manifest = load_json(root / "manifest.json", "manifest")
    fps = float(manifest["fps"])
    names = _pick_recordings(manifest, n_sequences)
    verts, audio = [], []
    for name in names:
        v = load_vertices(root / "vertices_npy" / f"{name}.npy")  # (T, V, 3)
        a = load_audio(root / "wav" / f"{name}.wav", strict=True)
        verts.append(v)
        audio.append(a[: round(v.shape[0] * AUDIO_RATE / fps)])
    faces = load_faces(root / "faces.npy", verts[0].shape[1])
    from avguide.assets.head import load_head

    head = load_head()
    video = root / "preview.mp4"
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "preview.wav"
        save_wav(wav, np.concatenate(audio))
        render_video([np.concatenate(verts)], faces, video, fps=fps, audio_path=wav,
                     vertex_part=np.asarray(head.vertex_part), part_names=tuple(head.part_names),
                     captions=[" | ".join(names)])
    sheet = write_viseme_sheet(root)
    return video, sheet


def _viseme_examples(root: Path) -> dict[str, tuple[str, str, float]]:
    """For each viseme class, the recording, phone and time of its longest phone (first split
    recordings are scanned in name order, so the choice is deterministic)."""
    from avguide.data.samples import load_phones
    from avguide.speech.visemes import VISEME_CLASSES, phoneme_to_viseme

    best: dict[str, tuple[float, str, str, float]] = {}
    for path in sorted((root / "alignments").glob("*.json"))[:60]:
        for ipa, start, end in load_phones(path):
            if ipa == "_":
                continue
            code = phoneme_to_viseme(ipa)
            if end - start > best.get(code, (0.0,))[0]:
                best[code] = (end - start, path.stem, ipa, (start + end) / 2)
    return {c: best[c][1:] for c in VISEME_CLASSES if c in best}


def write_viseme_sheet(root: str | Path) -> Path:
    """Render ``visemes.png``: the 88x88 expert crop at one phone of each viseme class.

    Returns:
        The sheet's path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from avguide.assets.head import load_head
    from avguide.render.antialias import face_neighbors
    from avguide.render.lipcam import lip_camera
    from avguide.render.mesh import render_mesh
    from avguide.render.shading import head_albedo
    from avguide.speech.visemes import VISEME_NAMES

    root = Path(root)
    manifest = load_json(root / "manifest.json", "manifest")
    fps = float(manifest["fps"])
    head = load_head()
    faces = torch.from_numpy(load_faces(root / "faces.npy", head.num_vertices))
    examples = _viseme_examples(root)
    frames, labels = [], []
    templates = safe_load_pickle(root / "templates.pkl")
    first = next(iter(examples.values()))[0]
    subject = first.rsplit("_sentence", 1)[0]
    frames.append(templates[subject])
    labels.append(f"rest ({subject})")
    for code, (name, ipa, t) in examples.items():
        v = load_vertices(root / "vertices_npy" / f"{name}.npy", head.num_vertices)  # (T, V, 3)
        k = min(int(round(t * fps)), v.shape[0] - 1)
        frames.append(v[k])
        labels.append(f"{VISEME_NAMES[code]}  /{ipa}/")
    verts = torch.from_numpy(np.stack(frames)).float()  # (N, V, 3)
    lips = torch.tensor(np.asarray(head.regions["lips"]))
    cam = lip_camera(torch.from_numpy(np.asarray(templates[subject])).float(), lips)
    with torch.no_grad():
        img, _ = render_mesh(verts, faces, cam, head_albedo(head), neighbors=face_neighbors(faces))
    img = img.clamp(0, 1).permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)
    cols = 6
    rows = -(-len(frames) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.0, rows * 2.25))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, im, label in zip(axes.ravel(), img, labels):
        ax.imshow(im)
        ax.set_title(label, fontsize=8)
    fig.suptitle("lip camera (96x96) at one phone of each viseme class", fontsize=10)
    fig.tight_layout()
    out = root / "visemes.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out
