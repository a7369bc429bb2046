"""What the studio animates with: an animator on the embedded head, and the files of one take.

:class:`Engine` wraps a loaded animator (anything with ``.model``, ``.fps``, ``.train_subjects``,
``.templates`` {name: (V, 3)}: :class:`avguide.animate.LoadedAnimator`, or a test's tiny one) for
the server, through the main job's library (:mod:`avguide.animate`): text to speech, speech to
vertices, and a take's files (16 kHz wav, glb with the head's 52 morph targets, Live Link Face
CSV and JSON, and the mp4, rendered on request because it is the slow one). The head is the
embedded CC0 head, so the animator must animate its 4742 vertices. :class:`ArkitProjector` is
:func:`avguide.export.solve_arkit` with the blendshapes' Gram matrix made once, for streams that
fit a few frames at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avguide import AUDIO_RATE
from avguide.animators.stream import AnimationStream, affine_readout, can_stream
from avguide.assets.head import HeadAsset, load_head
from avguide.audio.encoders import encoder_lookahead_s
from avguide.errors import BadInputError
from avguide.export import head_vertex_colors, write_glb
from avguide.export.boxqp import solve_box_qp, solve_box_qp_warm
from avguide.io import save_wav


class ArkitProjector:
    """Per-frame ARKit weights in [0, 1] by bounded least squares on fixed blendshapes: the box
    QP of :func:`avguide.export.solve_arkit`, with the (52, 52) Gram matrix made once (float64)
    instead of per call, and the per-frame projections ``blendshapes . (vertices - template)`` in
    float32 (the weights agree with ``solve_arkit`` to about 1e-5).

    Two shortcuts for streams, each equal to the plain computation to round-off:

    * a stream passes its own ``active`` set: each frame's QP then starts from the bounds the frame
      before held (:func:`avguide.export.boxqp.solve_box_qp_warm`; consecutive frames share most
      of their bounds, so this costs a fraction of a fresh solve);
    * with the animator's affine ``readout`` (:func:`avguide.animators.stream.affine_readout`)
      the projections of a frame come straight from its (D,) decoder output through the folded
      (K, D) map ``blendshapes . W`` (:meth:`from_hidden`): no ``V*3``-wide product per frame.

    Args:
        blendshapes: (K, V, 3) deltas at weight 1 (the head's 52 ARKit shapes).
        readout: optional ``(W, b)``, ``W`` (V*3, D), ``b`` (V*3,): offsets ``= h @ W.T + b``.
    """

    def __init__(self, blendshapes: np.ndarray, readout: tuple[torch.Tensor, torch.Tensor] | None = None):
        # torch, not numpy, for the products: numpy's BLAS threads spin on a busy 2-core machine
        basis = torch.from_numpy(np.asarray(blendshapes, np.float64).reshape(len(blendshapes), -1))  # (K, V*3)
        self.gram = (basis @ basis.T).numpy()                                                       # (K, K)
        self.basis = basis.float()
        self.fold = None
        if readout is not None:
            w, bias = (torch.as_tensor(t).detach().double() for t in readout)
            self.fold = (basis @ w).numpy(), (basis @ bias).numpy()                      # (K, D), (K,)

    def new_active(self) -> np.ndarray:
        """A stream's warm start for :meth:`__call__`: (K,) int8, no bound held yet."""
        return np.zeros(len(self.basis), np.int8)

    def _solve(self, b: np.ndarray, active: np.ndarray | None) -> np.ndarray:
        if active is None:
            return solve_box_qp(self.gram, b, 0.0, 1.0).x.astype(np.float32)
        return solve_box_qp_warm(self.gram, b, 0.0, 1.0, active).astype(np.float32)

    def __call__(self, vertices: np.ndarray | torch.Tensor, template: np.ndarray,
                 active: np.ndarray | None = None) -> np.ndarray:
        """(k, V, 3) vertices of a face whose rest shape is ``template`` (V, 3) -> (k, K) float32
        weights (k may be 0). ``active``: the stream's (K,) int8 active set (:meth:`new_active`),
        updated in place; None: each call solved from scratch (:func:`solve_box_qp`)."""
        if len(vertices) == 0:
            return np.zeros((0, len(self.basis)), np.float32)
        motion = torch.as_tensor(vertices, dtype=torch.float32).reshape(len(vertices), -1) - \
            torch.from_numpy(np.array(template, np.float32)).reshape(-1)                   # (k, V*3)
        return self._solve((motion @ self.basis.T).double().numpy(), active)             # b: (k, K)

    def from_hidden(self, hidden: np.ndarray | torch.Tensor, active: np.ndarray | None = None) -> np.ndarray:
        """(k, D) decoder outputs (``AnimationStream.push(..., hidden=True)``) -> (k, K) float32
        weights of the frames they read out to, by the folded readout in float64: closer to
        ``solve_arkit`` of those frames (a few 1e-6) than :meth:`__call__` on the float32 meshes
        (up to about 6e-5).

        Raises:
            ValueError: the projector was made without a ``readout``.
        """
        if self.fold is None:
            raise ValueError("from_hidden needs the projector made with the animator's affine readout")
        fold, bias = self.fold
        return self._solve(np.asarray(hidden, np.float64).reshape(-1, fold.shape[1]) @ fold.T + bias, active)


@dataclass(frozen=True)
class Take:
    """One animated utterance.

    Attributes:
        audio: (L,) float32 16 kHz speech. vertices: (T, V, 3) float32 animator output.
        subject: the speaking style's name. template: (V, 3) the subject's rest face.
    """

    audio: np.ndarray
    vertices: np.ndarray
    subject: str
    template: np.ndarray


class Engine:
    """The animator and the head, shared by every request (read-only after construction).

    Args:
        anim: a loaded animator (:class:`avguide.animate.LoadedAnimator` or one with the same
            ``model``, ``fps``, ``train_subjects``, ``templates``, ``checkpoint``); a subject
            missing from ``anim.templates`` gets the head's rest shape as its face.
        head: the head asset (default :func:`avguide.assets.head.load_head`).
    Raises:
        ValueError: the animator does not animate the head's vertex count.
    """

    def __init__(self, anim: Any, head: HeadAsset | None = None):
        self.anim = anim
        self.head = head if head is not None else load_head()
        self.model = anim.model.eval()
        if self.model.n_vertices != self.head.num_vertices:
            raise ValueError(f"the studio shows the embedded head ({self.head.num_vertices} vertices); "
                             f"this animator animates {self.model.n_vertices}")
        self.fps = float(anim.fps)
        self.subjects = list(anim.train_subjects)
        self.templates = {s: np.array(anim.templates.get(s, self.head.vertices), np.float32)  # own copies
                          for s in self.subjects}
        self.colors = head_vertex_colors(self.head)
        self.projector = ArkitProjector(self.head.blendshapes, affine_readout(self.model))
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

    @staticmethod
    def speak(text: str, voice: str | None = None) -> np.ndarray:
        """Typed text -> (L,) float32 16 kHz speech (:func:`avguide.animate.speak_text`).

        Raises:
            BadInputError: empty text or an unknown voice.
        """
        from avguide.animate import speak_text

        return speak_text(text, voice)

    def animate(self, audio: np.ndarray, subject: str | None = None) -> Take:
        """Speech -> a :class:`Take` (:func:`avguide.animate.animate_speech`: streamed in blocks,
        equal to ``model.generate``).

        Args:
            audio: (L,) float32 16 kHz mono. subject: speaking style (None: the first).
        """
        from avguide.animate import animate_speech

        index, name = self.subject(subject)
        template = self.templates[name]
        vertices = np.concatenate(list(animate_speech(self.anim, audio, template, index)))  # (T, V, 3)
        return Take(audio, vertices.astype(np.float32), name, template)

    def stream(self, subject: str | None = None) -> tuple[AnimationStream, str]:
        """A new :class:`AnimationStream` for ``subject`` and the subject's name.

        Raises:
            BadInputError: an unknown subject, or an animator that cannot stream.
        """
        index, name = self.subject(subject)
        return AnimationStream(self.model, self.templates[name], index), name

    def write_take(self, take: Take, folder: Path, formats: tuple[str, ...] = ("arkit", "glb", "npy")) -> dict:
        """A take's files in ``folder`` by :func:`avguide.animate.write_outputs` (stem ``take``:
        ``take.glb``, ``take_arkit.csv`` / ``.json``, ``take.npy`` (T, V*3), ``take.mp4``) and
        ``speech.wav``. Returns {format: path}."""
        from avguide.animate import write_outputs

        wav = folder / "speech.wav"
        if not wav.is_file():
            save_wav(wav, take.audio, AUDIO_RATE)
        out = write_outputs(folder, "take", [take.vertices], len(take.vertices), take.audio, self.anim,
                            take.template, self.head.faces, formats)
        return {"wav": wav, **{k: Path(v) for k, v in out.items()}}

    def write_rest_glb(self, path: Path, subject: str | None = None) -> Path:
        """The subject's face at rest (one frame, all weights 0) as a glb: the page's first head."""
        _, name = self.subject(subject)
        return write_glb(path, self.templates[name], self.head.faces, self.head.blendshapes,
                         np.zeros((1, len(self.head.blendshapes)), np.float32), self.fps,
                         vertex_colors=self.colors)
