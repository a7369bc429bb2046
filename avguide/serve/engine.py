"""What the studio animates with: an animator on the embedded head, and the files of one take.

:class:`Engine` wraps a loaded animator (anything with ``.model``, ``.fps``, ``.train_subjects``,
``.templates`` {name: (V, 3)}: :class:`avguide.animate.LoadedAnimator`, or a test's tiny one) for
the server: text to speech, speech to vertices, vertices to ARKit weights, and a take's files
(16 kHz wav, glb with the head's 52 morph targets, Live Link Face CSV, and the mp4, rendered on
request because it is the slow one). The head is the embedded CC0 head, so the animator must
animate its 4742 vertices. :class:`ArkitProjector` is :func:`avguide.export.solve_arkit` with the
blendshapes' Gram matrix factored once, for streams that fit a few frames at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avguide import AUDIO_RATE
from avguide.animators.stream import AnimationStream, animate_in_chunks, can_stream
from avguide.assets.head import HeadAsset, load_head
from avguide.audio.encoders import encoder_lookahead_s
from avguide.errors import BadInputError
from avguide.export import head_vertex_colors, solve_arkit, write_arkit_csv, write_glb
from avguide.export.boxqp import solve_box_qp
from avguide.io import save_wav

VOICE = "m3"
"""espeak-ng voice variant the studio speaks typed text with."""


class ArkitProjector:
    """Per-frame ARKit weights in [0, 1] by bounded least squares on fixed blendshapes, equal to
    :func:`avguide.export.solve_arkit`'s (the same box QP), with the (52, 52) Gram matrix made
    once instead of per call.

    Args:
        blendshapes: (K, V, 3) deltas at weight 1 (the head's 52 ARKit shapes).
    """

    def __init__(self, blendshapes: np.ndarray):
        # torch, not numpy, for the products: numpy's BLAS threads spin on a busy 2-core machine
        self.basis = torch.from_numpy(np.asarray(blendshapes, np.float64).reshape(len(blendshapes), -1))  # (K, V*3)
        self.gram = (self.basis @ self.basis.T).numpy()                                                  # (K, K)

    def __call__(self, vertices: np.ndarray, template: np.ndarray) -> np.ndarray:
        """(k, V, 3) vertices of a face whose rest shape is ``template`` (V, 3) -> (k, K) float32
        weights (k may be 0)."""
        if len(vertices) == 0:
            return np.zeros((0, len(self.basis)), np.float32)
        motion = torch.as_tensor(np.asarray(vertices, np.float64).reshape(len(vertices), -1)) - \
            torch.as_tensor(np.asarray(template, np.float64).reshape(-1))                  # (k, V*3)
        return solve_box_qp(self.gram, (motion @ self.basis.T).numpy(), 0.0, 1.0).x.astype(np.float32)


@dataclass(frozen=True)
class Take:
    """One animated utterance.

    Attributes:
        audio: (L,) float32 16 kHz speech. vertices: (T, V, 3) float32 animator output.
        weights: (T, 52) ARKit weights of the vertices. subject: speaking style's name.
        template: (V, 3) the subject's rest face. arkit_rms_mm: RMS error of the weights' mesh.
    """

    audio: np.ndarray
    vertices: np.ndarray
    weights: np.ndarray
    subject: str
    template: np.ndarray
    arkit_rms_mm: float


class Engine:
    """The animator and the head, shared by every request (read-only after construction).

    Args:
        anim: a loaded animator; ``anim.templates`` may lack a subject (then the head's rest
            shape is its face).
        head: the head asset (default :func:`avguide.assets.head.load_head`).
    Raises:
        ValueError: the animator does not animate the head's vertex count.
    """

    def __init__(self, anim: Any, head: HeadAsset | None = None):
        self.head = head if head is not None else load_head()
        self.model = anim.model.eval()
        if self.model.n_vertices != self.head.num_vertices:
            raise ValueError(f"the studio shows the embedded head ({self.head.num_vertices} vertices); "
                             f"this animator animates {self.model.n_vertices}")
        self.fps = float(anim.fps)
        self.subjects = list(anim.train_subjects)
        self.templates = {s: np.asarray(anim.templates.get(s, self.head.vertices), np.float32)
                          for s in self.subjects}
        self.colors = head_vertex_colors(self.head)
        self.projector = ArkitProjector(self.head.blendshapes)
        self.streaming = can_stream(self.model)
        self.lookahead_s = encoder_lookahead_s(self.model.cfg.audio) if self.streaming else None

    def subject(self, name: str | None) -> tuple[int, str]:
        """Style index and name of ``name`` (None: the first training subject).

        Raises:
            BadInputError: an unknown name (the message lists the known ones).
        """
        if name is None or name == "":
            return 0, self.subjects[0]
        if name not in self.subjects:
            raise BadInputError(f"subject {name!r} is unknown; this model knows {', '.join(self.subjects)}")
        return self.subjects.index(name), name

    def speak(self, text: str) -> np.ndarray:
        """Typed text -> (L,) float32 16 kHz speech (espeak-ng, voice :data:`VOICE`).

        Raises:
            BadInputError: empty text, or text espeak-ng makes no sound of.
        """
        from avguide.speech.espeak import Voice, speak

        return speak(text, Voice(VOICE)).audio

    @torch.no_grad()
    def animate(self, audio: np.ndarray, subject: str | None = None) -> Take:
        """Speech -> a :class:`Take` (vertices at ``self.fps`` and their ARKit weights).

        Args:
            audio: (L,) float32 16 kHz mono. subject: speaking style (None: the first).
        """
        index, name = self.subject(subject)
        template = self.templates[name]
        if self.streaming:  # bounded memory for any length; equal to model.generate
            vertices = np.concatenate(list(animate_in_chunks(self.model, audio, template, index)))
        else:
            a = torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None]
            vertices = self.model.generate(a, torch.tensor([a.shape[1]]), torch.from_numpy(template)[None],
                                           torch.tensor([index]))[0].numpy()
        fit = solve_arkit(vertices, template, self.head.blendshapes)
        return Take(audio, vertices.astype(np.float32), fit.weights, name, template, fit.rms_error_mm)

    def stream(self, subject: str | None = None) -> tuple[AnimationStream, str]:
        """A new :class:`AnimationStream` for ``subject`` and the subject's name.

        Raises:
            BadInputError: an unknown subject, or an animator that cannot stream.
        """
        index, name = self.subject(subject)
        return AnimationStream(self.model, self.templates[name], index), name

    def write_take(self, take: Take, out_dir: Path) -> dict[str, Path]:
        """The wav, glb and Live Link Face CSV of a take in ``out_dir``: {"wav"|"glb"|"csv": path}."""
        out = {"wav": out_dir / "speech.wav", "glb": out_dir / "take.glb", "csv": out_dir / "take.csv"}
        save_wav(out["wav"], take.audio, AUDIO_RATE)
        write_glb(out["glb"], take.template, self.head.faces, self.head.blendshapes, take.weights, self.fps,
                  vertex_colors=self.colors)
        write_arkit_csv(out["csv"], take.weights, self.fps)
        return out

    def write_rest_glb(self, path: Path, subject: str | None = None) -> Path:
        """The subject's face at rest (one frame, all weights 0) as a glb: the page's first head."""
        _, name = self.subject(subject)
        return write_glb(path, self.templates[name], self.head.faces, self.head.blendshapes,
                         np.zeros((1, len(self.head.blendshapes)), np.float32), self.fps,
                         vertex_colors=self.colors)

    def render_mp4(self, vertices: np.ndarray, wav: Path, path: Path) -> Path:
        """The take as an mp4 (the animator's meshes rendered, the speech muxed)."""
        from avguide.render.video import render_video

        render_video([vertices], self.head.faces, path, fps=self.fps, audio_path=wav,
                     vertex_part=np.asarray(self.head.vertex_part), workers=1, progress=False)
        return path
