"""The audio-visual guidance loss of stage 2: predicted meshes -> lip video -> expert -> CTC / CE.

    pred (B, T, V, 3) @ dataset fps
      -> resample to 25 fps, render with the lip camera placed from each subject's template
         (docs/design.md, section 2, points 3 and 6), centre crop, gray, normalise      (B, T25, 1, c, c)
      -> expert(video, audio at 16 kHz cut to 640 samples per frame [AV expert only],
                transcript tokens from the expert's own tokeniser)    (docs/design.md, section 2, points 2 and 4)
      -> {"ctc": L_ctc, "ce": L_ce (label-smoothed attention CE)}
    L_rlv = MSE over the lip vertices (the regulariser)

The stage's total loss is ``l_mse * L_mse + l_av * (l_ctc * L_ctc + l_ce * L_ce) + l_rlv * L_rlv``
(:func:`loss_weights` turns :class:`AVGuidanceConfig` into the per-term weights that
:func:`avguide.train.losses.combine` uses). :func:`gradient_probe` measures how strongly each
weighted term pulls on the predicted vertices, so anyone can see whether the guidance reaches the
mesh (the published code's renderer passed ~0 gradient, docs/design.md, section 2, point 1).

:meth:`AVGuidance.step` is the whole AV part of a training step, as EnCodec's ``Balancer`` is
for its losses: the render and the expert's reading, the balance of l_av (``av.balance``), the
gradient probes and the mean of l_av over data-parallel processes; the loop calls it and then
the backward it returns. It backpropagates through the renderer once per step: the expert reads
a detached copy of the rendered video, so its backward stops at the pixels; when the balance or
a probe needs dL_av/d(pred), that gradient is computed once (expert, then renderer) and the
final backward starts from the prediction with it (``pred.backward(l_av * dL_av/dpred)`` plus
the animator's own terms) instead of going through the renderer a second time.

Expert modes: ``frozen`` (default) keeps the stage-1 expert fixed, in eval mode; ``finetune``
(the paper's choice) trains it concurrently on the animator's renders with its own learning rate.
Frozen is the default here because the stage-1 expert was already trained to convergence on
ground-truth renders of this very dataset (the paper fine-tunes to bridge a 2D -> 3D domain gap
that avguide's stage 1 closes), and a frozen judge cannot learn to read the animator's mistakes
as the transcript, which would weaken the guidance as training goes on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Literal

import torch

from avguide.animators.common import masked_mse
from avguide.animators.masks import padding_mask
from avguide.errors import BadInputError
from avguide.lipreader.lipvideo import gray_to_video, lip_cameras, lip_gray
from avguide.lipreader.losses import warn_ctc_unfit
from avguide.lipreader.preprocess import align_audio, normalize_audio
from avguide.lipreader.reader import TrainedExpert, load_trained_expert
from avguide.lipreader.tokenizers import pad_targets
from avguide.render import lip_face_mask
from avguide.train import distributed as D
from avguide.train.audio_augment import AudioAugmentConfig, augment_audio
from avguide.train.losses import combine

AV_TERMS = ("ctc", "ce")


@dataclass
class AVGuidanceConfig:
    """Stage-2 ("av") settings.

    Attributes:
        expert: the stage-1 expert run (``avguide train --stage expert``); its modality (AV or
            visual-only), tokeniser and crop size are read from it.
        which: its "best" or "last" checkpoint.
        l_mse, l_av, l_ctc, l_ce, l_rlv: the loss weights (see the module docstring). l_av = 1e-7
            is the paper's value; with avguide's gradient-carrying renderer the right value is
            larger (measure it with the gradient probes, see the benchmark report).
        expert_mode: "frozen" (default, see the module docstring) or "finetune".
        expert_lr: learning rate of the expert when fine-tuned.
        balance: 0 uses the fixed l_av. > 0: every step, l_av is set so that the AV gradient on
            the predicted vertices has ``balance`` times the norm of the vertex-loss gradient,
            |d(l_av L_av)/d(pred)| = balance * |d(l_mse L_mse)/d(pred)| (measured by autograd on the
            prediction; the backward through the renderer is shared with the step's own). A fixed l_av
            cannot transfer across experts: |dL_av/d(pred)| was ~7e-3 for an untrained tiny
            expert and ~600 for a trained one, while |dL_mse/d(pred)| of a trained animator is
            ~1e-6 (see the benchmark report).
        balance_on: where ``balance`` compares the gradients. "vertices": on the predicted
            vertices, against the vertex loss (above). "parameters": on the animator's
            parameters, against all of its own losses (every term but the AV ones and l_rlv),
            |d(l_av L_av)/d(theta)| = balance * |d(L_animator)/d(theta)|. Use "parameters" when
            the animator is not trained through its vertices: CodeTalker's stage-2 loss is driven
            by the code-feature regression ``reg`` (codec units), which never passes through the
            vertices: on the ``cpu`` benchmark a vertex-balanced AV term (l_av ~3e-10) changed no
            test prediction, while balanced on the parameters l_av came out at 1e-3 to 1e-2.
            Costs two more backward passes through the animator (not the renderer).
        probe_every: every this many steps, log the norms of d(l_av L_av)/d(pred) and
            d(l_mse L_mse)/d(pred) (from the gradient ``balance`` uses; no extra pass through the
            renderer); 0 disables.
        face_slack: faces drawn are those projecting within the lip image enlarged by this
            fraction of its size on each side, in the template (room for the jaw; a speed-up).
        render_workers: threads rendering chunks of the predicted frames at once
            (:func:`avguide.render.parallel.map_batch`; same images and gradients, ~1.5x faster
            on 2 cores, see ``bench/render.py``).
        audio_drop, audio_noise_prob, audio_snr_db: AV experts only, training steps only: the
            audio the expert hears is zeroed for a random ``audio_drop`` share of the recordings,
            and white noise at ``audio_snr_db`` dB (over the valid samples) is added to a random
            ``audio_noise_prob`` share (:func:`avguide.train.audio_augment.augment_audio`). With
            clean audio a strong AV expert reads the transcript from the audio, and its loss then
            says little about the lips; these variants make the lips matter (issue 18's
            mechanism). Both 0 (the default): the clean audio, and no random draws.
        render_compile: render with ``torch.compile``'d kernels (:func:`avguide.render.render_mesh`:
            the same images and gradients up to float32 rounding, ~1.3x faster renders after a
            first call that compiles for ~50 s per process, ~6 s with inductor's disk cache;
            needs a C++ compiler, else eager).
    """

    expert: str = ""
    which: Literal["best", "last"] = "best"
    l_mse: float = 1.0
    l_av: float = 1e-7
    l_ctc: float = 0.1
    l_ce: float = 0.9
    l_rlv: float = 0.0
    expert_mode: Literal["frozen", "finetune"] = "frozen"
    expert_lr: float = 1e-5
    balance: float = 0.0
    balance_on: Literal["vertices", "parameters"] = "vertices"
    probe_every: int = 10
    face_slack: float = 0.5
    render_workers: int = 2
    render_compile: bool = False
    audio_drop: float = 0.0
    audio_noise_prob: float = 0.0
    audio_snr_db: float = 10.0

    def check(self) -> list[str]:
        errors = []
        for name in ("l_mse", "l_av", "l_ctc", "l_ce", "l_rlv"):
            if not getattr(self, name) >= 0:
                errors.append(f"av.{name}: must be >= 0, got {getattr(self, name)}")
        if not self.expert_lr > 0:
            errors.append(f"av.expert_lr: must be > 0, got {self.expert_lr}")
        if self.probe_every < 0 or self.face_slack < 0 or self.balance < 0:
            errors.append("av.probe_every, av.face_slack and av.balance: must be >= 0")
        if self.balance_on not in ("vertices", "parameters"):
            errors.append(f"av.balance_on: 'vertices' or 'parameters', got {self.balance_on!r}")
        for name in ("audio_drop", "audio_noise_prob"):
            if not 0 <= getattr(self, name) <= 1:
                errors.append(f"av.{name}: a share in [0, 1], got {getattr(self, name)}")
        if self.render_workers < 1:
            errors.append(f"av.render_workers: must be >= 1, got {self.render_workers}")
        return errors


def loss_weights(cfg: AVGuidanceConfig) -> dict[str, float]:
    """Weights of the named terms: {"mse", "ctc", "ce", "rlv"} (l_av folded into ctc and ce)."""
    return {"mse": cfg.l_mse, "ctc": cfg.l_av * cfg.l_ctc, "ce": cfg.l_av * cfg.l_ce, "rlv": cfg.l_rlv}


def lip_vertex_loss(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor, lips: torch.Tensor
                    ) -> torch.Tensor:
    """L_rlv: MSE over the lip vertices and valid frames.

    Args:
        pred, target: (B, T, V, 3) float. lengths: (B,) int64 valid frames. lips: (Lv,) int64.
    Returns:
        () float.
    """
    return masked_mse(pred[:, :, lips], target[:, :, lips], lengths)


class AVGuidance:
    """The expert and everything needed to score predicted meshes against transcripts, and the
    AV part of a training step (:meth:`step`).

    Args:
        cfg: the stage-2 settings.
        n_vertices: V of the animator's meshes (must be the expert's topology).
        lips: (Lv,) int64 lip indices of the dataset (L_rlv).
        device: where the expert runs.
        expert: an already loaded expert (tests); default: ``load_trained_expert(cfg.expert)``.
        weights: the weights of every named term of the step, the animator's own and the AV ones
            (default: :func:`loss_weights` of ``cfg``).
        params: the animator's trainable parameters (``balance_on=parameters``).
        ctx: the data-parallel context (l_av is averaged over processes; a fine-tuned expert is
            wrapped in DDP). grad_clip: max gradient norm of a fine-tuned expert (0: none).
    Raises:
        BadInputError / MissingFileError: no such expert run, or another mesh topology.
    """

    def __init__(self, cfg: AVGuidanceConfig, n_vertices: int, lips: torch.Tensor, device: torch.device,
                 expert: TrainedExpert | None = None, *, weights: dict[str, float] | None = None,
                 params: list[torch.Tensor] | None = None, ctx: D.DistContext | None = None, grad_clip: float = 0.0):
        self.cfg = cfg
        te = expert if expert is not None else load_trained_expert(cfg.expert, cfg.which)
        if te.assets.n_vertices != n_vertices:
            raise BadInputError(f"av.expert={cfg.expert}: the expert was trained on meshes of "
                                f"{te.assets.n_vertices} vertices, the animator's have {n_vertices}")
        if te.model.cfg.modality == "audio":
            raise BadInputError(f"av.expert={cfg.expert}: an audio-only model never sees the lips, so it "
                                "cannot guide them; use an audio-visual or visual-only stage-1 run")
        self.expert = te.model.to(device)
        self.tokenizer, self.crop, self.assets = te.tokenizer, te.crop, te.assets
        self.tokenizer_name = str(te.meta["tokenizer"])
        self.audio_visual = te.model.cfg.modality == "av"
        self.lips = lips.to(device)
        self.device = device
        self.weights = dict(weights) if weights is not None else loss_weights(cfg)
        self.params = list(params or [])
        self.ctx = ctx or D.DistContext(0, 1, torch.device(device))
        self.grad_clip = grad_clip
        trainable = cfg.expert_mode == "finetune"
        for p in self.expert.parameters():
            p.requires_grad_(trainable)
        # the module the training step calls: the expert, in DDP when fine-tuned on several processes
        self.module = D.wrap_model(self.expert, self.ctx) if trainable else self.expert
        self.read = self.unfit = 0  # recordings read by :meth:`losses`; those whose CTC target does not fit
        self.training = False
        self.train(False)

    @property
    def trainable(self) -> bool:
        return self.cfg.expert_mode == "finetune"

    def train(self, mode: bool) -> None:
        """Training steps (``mode``: the audio variants apply) or evaluation; the expert is in train
        mode only when fine-tuned and ``mode`` (dropout, batch-norm updates)."""
        self.training = mode
        self.expert.train(mode and self.trainable)

    def targets(self, texts: list[str | None]) -> torch.Tensor:
        """(B, S) int64 token ids of the transcripts, padded with -1.

        Raises:
            BadInputError: a recording without a transcript.
        """
        if any(not t for t in texts):
            raise BadInputError("AV guidance needs a transcript for every training recording "
                                "(sentencestext/<Subject>.txt)")
        return pad_targets([self.tokenizer.encode(t) for t in texts]).to(self.device)

    def video(self, pred: torch.Tensor, lengths: torch.Tensor, template: torch.Tensor, fps: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The expert's differentiable view of predicted meshes.

        Args:
            pred: (B, T, V, 3) float predicted meshes at ``fps``. lengths: (B,) int64 valid frames.
            template: (B, V, 3) float neutral meshes (lip camera placement, fixed per sequence).
            fps: frame rate of ``pred``.
        Returns:
            video (B, T25, 1, c, c) float normalised (zeros past the lengths), lengths25 (B,) int64.
        """
        cam = lip_cameras(template.detach(), self.assets, self.crop)
        mask = lip_face_mask(template.detach(), self.assets.faces.to(pred.device), cam, slack=self.cfg.face_slack)
        gray, len25 = lip_gray(pred, lengths, fps, self.assets, cam, self.crop, face_mask=mask,
                               workers=self.cfg.render_workers, compile=self.cfg.render_compile)
        return gray_to_video(gray, len25), len25

    def read_video(self, video: torch.Tensor, len25: torch.Tensor, batch, expert: torch.nn.Module | None = None
                   ) -> dict[str, torch.Tensor]:
        """L_ctc and L_ce of the expert reading lip videos against the batch's transcripts.

        Args:
            video: (B, T25, 1, c, c) float from :meth:`video`. len25: (B,) int64.
            batch: the :class:`avguide.data.batching.Batch` (16 kHz audio, texts).
            expert: the module to call instead of ``self.expert``.
        Returns:
            {"ctc": (), "ce": ()} float tensors; counts the recordings read in ``read`` and those
            whose transcript has more tokens than the expert has frames in ``unfit``.
        """
        audio = alen = None
        if self.audio_visual:
            audio, alen = align_audio(batch.audio, batch.audio_lengths, len25)
            if self.training and (self.cfg.audio_drop or self.cfg.audio_noise_prob):
                variant = AudioAugmentConfig(noise_prob=self.cfg.audio_noise_prob, snr_min_db=self.cfg.audio_snr_db,
                                             snr_max_db=self.cfg.audio_snr_db, time_masks=0,
                                             dropout_prob=self.cfg.audio_drop)
                audio, _ = augment_audio(audio, alen, variant)
            audio = normalize_audio(audio, alen)
        out = (expert or self.expert)(video, len25, audio, alen, self.targets(batch.texts))
        self.read += len(batch.texts)
        self.unfit = self.unfit + out["ctc_unfit"].detach()  # their CTC loss is 0: no CTC guidance (no host sync)
        return {"ctc": out["loss_ctc"], "ce": out["loss_att"]}

    def losses(self, pred: torch.Tensor, batch, expert: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
        """L_ctc, L_ce of the expert reading the predicted meshes, and L_rlv (one graph from
        ``pred`` through the renderer and the expert).

        Args:
            pred: (B, T, V, 3) float predicted meshes (the animator's output, with gradient).
            batch: the :class:`avguide.data.batching.Batch` (vertices, lengths, template, audio
                at 16 kHz, texts, fps).
            expert: the module to call instead of ``self.expert``.
        Returns:
            {"ctc": (), "ce": (), "rlv": ()} float tensors (see :meth:`read_video`).
        """
        video, len25 = self.video(pred, batch.lengths, batch.template, batch.fps)
        return {**self.read_video(video, len25, batch, expert),
                "rlv": lip_vertex_loss(pred, batch.vertices, batch.lengths, self.lips)}

    def step(self, pred: torch.Tensor, batch, losses: dict[str, torch.Tensor], step: int
             ) -> tuple[Callable[[], None], dict[str, float]]:
        """The AV part of one training step.

        Args:
            pred: (B, T, V, 3) float the animator's prediction (with gradient).
            batch: the batch it predicts (see :meth:`losses`).
            losses: the animator's own named terms ("mse", ...); "ctc", "ce" and "rlv" are added, and
                "mse" (the masked vertex MSE) is computed again on ``pred``.
            step: optimiser steps done so far (gradient probes when ``step % probe_every == 0``).
        Returns:
            ``backward``: call it on zeroed gradients; it leaves in ``.grad`` the gradient of the
            weighted sum of every term (for the animator, and for a fine-tuned expert, clipped to
            ``grad_clip``). ``logs``: every term, "total", and "l_av" (balanced) and the
            ``gnorm_*`` probes when taken, as floats.
        """
        cfg = self.cfg
        video, len25 = self.video(pred, batch.lengths, batch.template, batch.fps)  # (B, T25, 1, c, c)
        seen = video.detach().requires_grad_()  # the expert's input: its backward stops at the pixels
        av = self.read_video(seen, len25, batch, self.module)
        # L_mse recomputed on ``pred`` (the animator's own term, the same value): with DDP the model's
        # outputs leave it side by side, so its "mse" would have no gradient path from ``pred``
        losses = {**losses, "mse": masked_mse(pred, batch.vertices, batch.lengths), **av,
                  "rlv": lip_vertex_loss(pred, batch.vertices, batch.lengths, self.lips)}
        unit = cfg.l_ctc * av["ctc"] + cfg.l_ce * av["ce"]  # L_av
        probing = cfg.probe_every > 0 and step % cfg.probe_every == 0
        weights, l_av, extra = self.weights, cfg.l_av, {}
        g_unit, known = None, None
        if cfg.balance > 0 or probing:  # dL_av/d(pred): one backward through the expert, one through the renderer
            (g_video,) = torch.autograd.grad(unit, seen, retain_graph=self.trainable, allow_unused=True)
            g_unit = torch.zeros_like(pred) if g_video is None else torch.autograd.grad(video, pred, g_video)[0]
            if cfg.balance > 0:
                keep = {} if cfg.balance_on == "parameters" and self._reusable(weights) else None
                l_av = D.mean_across({"l_av": balanced_l_av(pred, losses, cfg, self.params, weights, g_unit, keep)},
                                     self.ctx)["l_av"]
                weights = {**weights, **loss_weights(dataclasses.replace(cfg, l_av=l_av))}
                extra["l_av"] = l_av
                known = keep or None
            if probing:
                extra.update(gradient_probe(pred, losses, dataclasses.replace(cfg, l_av=l_av), self.lips, g_unit,
                                            truth=(batch.vertices, batch.lengths)))
        _, logs = combine(losses, weights)

        def backward() -> None:
            own = [w * v for k, v in losses.items() if k not in AV_TERMS and (w := weights[k]) != 0.0]
            if g_unit is None:  # the AV gradient at the pixels, then renderer and animator in one pass
                av_terms = [w * av[k] for k in AV_TERMS if (w := weights[k]) != 0.0]
                if av_terms and sum(av_terms).requires_grad:
                    sum(av_terms).backward()
                _backward([*own, video], [None] * len(own) + [seen.grad])
            else:  # the AV gradient is known at the prediction: the renderer is not traversed again
                if self.trainable:
                    (l_av * unit).backward()  # the expert's parameters (and ``seen``, unused)
                if known is not None:  # the balance took both gradients on the parameters: add them
                    _add_grads(self.params, known["own"], known["av"], l_av)
                else:
                    _backward([*own, pred], [None] * len(own) + [l_av * g_unit])
            if self.trainable and self.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.expert.parameters(), self.grad_clip)

        return backward, {**logs, **extra}

    def _reusable(self, weights: dict[str, float]) -> bool:
        """Whether the gradients ``balance_on=parameters`` takes make the step's whole gradient on
        the animator: one process (DDP reduces gradients in a backward), no lip-vertex term (it is
        not in the balance) and no negative weight."""
        return (self.ctx.world_size == 1 and weights.get("rlv", 0.0) == 0.0
                and all(w >= 0 for k, w in weights.items() if k not in AV_TERMS))

    # ---- what the loop saves, restores and logs ------------------------------------------------
    def param_groups(self) -> list[dict]:
        """The fine-tuned expert's parameter group (its own learning rate); none when frozen."""
        return [{"params": list(self.expert.parameters()), "lr": self.cfg.expert_lr}] if self.trainable else []

    def state_dict(self) -> dict:
        """What a checkpoint's train state holds of the guidance: the fine-tuned expert."""
        return {"expert": self.expert.state_dict()} if self.trainable else {}

    def load_state_dict(self, train_state: dict, source) -> None:
        """Restore :meth:`state_dict` from a checkpoint's train state.

        Raises:
            BadInputError: the fine-tuned expert is missing or does not fit (``source`` named).
        """
        if self.trainable:
            if "expert" not in train_state:
                raise BadInputError(f"{source}/train_state.pt: no fine-tuned expert in it (was this run's expert "
                                    "frozen? av.expert_mode cannot change on resume)")
            try:
                self.expert.load_state_dict(train_state["expert"])
            except RuntimeError as e:
                raise BadInputError(f"{source}/train_state.pt: its expert does not fit av.expert "
                                    f"({' '.join(str(e).split())[:200]})") from None

    def end_epoch(self, first: bool) -> dict[str, float]:
        """The epoch's share of recordings whose transcript gets no CTC guidance ({"ctc_unfit"},
        averaged over processes; warned about after the first epoch of a run), after checking
        that a fine-tuned expert is identical on every process."""
        if self.trainable:
            D.assert_replicas_equal(self.expert, self.ctx)
        c = D.mean_across(self.take_unfit_counts(), self.ctx)
        share = c["ctc_unfit"] / max(c["ctc_read"], 1.0)
        if first and self.ctx.is_main:
            warn_ctc_unfit(share, self.tokenizer_name, "They get no CTC guidance.")
        return {"ctc_unfit": share}

    def take_unfit_counts(self) -> dict[str, float]:
        """{"ctc_unfit": recordings whose CTC target did not fit, "ctc_read": recordings read} since
        the last call (then both restart at 0)."""
        counts = {"ctc_unfit": float(self.unfit), "ctc_read": float(self.read)}
        self.read = self.unfit = 0
        return counts


def _backward(roots: list, grads: list) -> None:
    """``torch.autograd.backward`` of the roots that require a gradient (and have one given)."""
    pairs = [(r, g) for r, g in zip(roots, grads) if r is not None and r.requires_grad
             and (g is not None or r.dim() == 0)]
    if pairs:
        torch.autograd.backward([r for r, _ in pairs], [g for _, g in pairs])


def _add_grads(params: list[torch.Tensor], own: tuple, av: tuple, l_av: float) -> None:
    """``.grad`` of each parameter += own + l_av * av (None entries: no contribution)."""
    for p, g_own, g_av in zip(params, own, av):
        g = g_own if g_av is None else (l_av * g_av if g_own is None else g_own + l_av * g_av)
        if g is not None:
            p.grad = g if p.grad is None else p.grad + g


def av_gradient(pred: torch.Tensor, losses: dict[str, torch.Tensor], cfg: AVGuidanceConfig) -> torch.Tensor:
    """dL_av/d(pred) with L_av = l_ctc L_ctc + l_ce L_ce (l_av not applied; graph kept): one
    backward through the expert and the renderer, shared by :func:`balanced_l_av` and
    :func:`gradient_probe` in a training step.

    Returns:
        (B, T, V, 3) float, zeros when the AV terms do not depend on ``pred``.
    """
    return _grad_on(cfg.l_ctc * losses["ctc"] + cfg.l_ce * losses["ce"], pred)


def _grad_on(value: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """d(value)/d(pred), graph kept; zeros like ``pred`` when ``value`` does not depend on it."""
    if not value.requires_grad:
        return torch.zeros_like(pred)
    (g,) = torch.autograd.grad(value, pred, retain_graph=True, allow_unused=True)
    return torch.zeros_like(pred) if g is None else g


def balanced_l_av(pred: torch.Tensor, losses: dict[str, torch.Tensor], cfg: AVGuidanceConfig,
                  params: list[torch.Tensor] | None = None, weights: dict[str, float] | None = None,
                  g_av: torch.Tensor | None = None, keep: dict | None = None) -> float:
    """The l_av that balances the AV gradient against the animator's (graph kept).

    ``cfg.balance_on`` "vertices": |d(l_av L_av)/d(pred)| = balance * |d(l_mse L_mse)/d(pred)|.
    "parameters": |d(l_av L_av)/d(params)| = balance * |d(sum_k w_k L_k)/d(params)| over the
    animator's own terms k (all but "ctc", "ce", "rlv"); the AV gradient is taken on ``pred``
    once (through the renderer and the expert) and carried to the parameters from there.

    Args:
        pred: (B, T, V, 3) float prediction in the graph of ``losses`` ("mse", "ctc", "ce", ...).
        losses: the named scalar terms.
        cfg: l_mse, l_ctc, l_ce, ``balance`` (> 0) and ``balance_on``.
        params: the animator's trainable parameters ("parameters" only).
        weights: the weights of the animator's own terms ("parameters" only).
        g_av: :func:`av_gradient` of this step, if already computed.
        keep: "parameters" only: receives the two gradients on ``params`` (tuples, None where a
            parameter gets none): "own" of the animator's terms and "av" of L_av (l_av not applied).
    Returns:
        l_av as a float (0 when the AV gradient is exactly zero).
    """
    g_av = av_gradient(pred, losses, cfg) if g_av is None else g_av
    if cfg.balance_on == "vertices":
        (g_mse,) = torch.autograd.grad(cfg.l_mse * losses["mse"], pred, retain_graph=True)
        n_av, n_base = float(g_av.norm()), float(g_mse.norm())
    else:
        own = sum(weights[k] * v for k, v in losses.items() if k not in (*AV_TERMS, "rlv") and weights.get(k, 0) > 0)
        g_params = torch.autograd.grad(pred, params, grad_outputs=g_av, retain_graph=True, allow_unused=True)
        g_own = torch.autograd.grad(own, params, retain_graph=True, allow_unused=True)
        n_av, n_base = _norm(g_params), _norm(g_own)
        if keep is not None:
            keep.update(own=g_own, av=g_params)
    return cfg.balance * n_base / n_av if n_av > 0 else 0.0


def _norm(grads) -> float:
    """L2 norm of a tuple of gradients (None entries count as zero)."""
    return float(torch.sqrt(sum(g.square().sum() for g in grads if g is not None)))


def descent_alignment(grad: torch.Tensor, shown: torch.Tensor, true: torch.Tensor, lengths: torch.Tensor,
                      lips: torch.Tensor) -> torch.Tensor:
    """Per recording, the cosine between the descent direction ``-grad`` and the way from the lips
    shown to the true ones, over the valid frames and the lip vertices.

    Args:
        grad: (B, T, V, 3) gradient of a loss on the meshes shown. shown, true: (B, T, V, 3).
        lengths: (B,) valid frames. lips: (L,) lip vertex indices.
    Returns:
        (B,) float64 cosines in [-1, 1] (0 where either vector is zero).
    """
    valid = padding_mask(lengths, grad.shape[1])[..., None, None]  # (B, T, 1, 1)
    d = (-grad[:, :, lips] * valid).flatten(1).double()                      # (B, T*L*3)
    r = ((true - shown)[:, :, lips] * valid).flatten(1).double()
    return (d * r).sum(1) / (d.norm(dim=1) * r.norm(dim=1)).clamp(min=1e-300)


def gradient_probe(pred: torch.Tensor, losses: dict[str, torch.Tensor], cfg: AVGuidanceConfig,
                   lips: torch.Tensor, g_av: torch.Tensor | None = None,
                   truth: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
    """Norms of the weighted loss gradients with respect to the predicted vertices.

    Args:
        pred: (B, T, V, 3) float prediction, part of the graph of ``losses`` (the graph is retained).
        losses: named terms "mse", "ctc", "ce" and optionally "rlv" (scalar tensors).
        cfg: the weights.
        lips: (Lv,) int64 lip vertex indices.
        g_av: :func:`av_gradient` of this step, if already computed.
        truth: optional ``(vertices, lengths)``, the (B, T, V, 3) ground truth and (B,) valid frames.
    Returns:
        Floats: ``gnorm_av`` = |d(l_av L_av)/d(pred)| (L2 over all vertices and frames),
        ``gnorm_av_lips`` (the same over the lip vertices only), ``gnorm_av_unit`` =
        |dL_av/d(pred)| (independent of l_av: divide a target gradient norm by it to choose
        l_av), ``gnorm_mse`` = |d(l_mse L_mse)/d(pred)|, ``gnorm_rlv`` (if "rlv" is given),
        ``gnorm_ratio`` = gnorm_av / gnorm_mse (when gnorm_mse > 0) and, with ``truth``,
        ``cos_av_truth``: where descending L_av moves the lips, the batch mean of
        :func:`descent_alignment` (1: straight to the ground truth; about 0: no nearer).
    """
    g_unit = av_gradient(pred, losses, cfg) if g_av is None else g_av  # (B, T, V, 3)
    g_av = cfg.l_av * g_unit
    g_mse = cfg.l_mse * _grad_on(losses["mse"], pred)
    out = {"gnorm_av": float(g_av.norm()), "gnorm_av_lips": float(g_av[:, :, lips].norm()),
           "gnorm_av_unit": float(g_unit.norm()), "gnorm_mse": float(g_mse.norm())}
    if "rlv" in losses:
        out["gnorm_rlv"] = float(cfg.l_rlv * _grad_on(losses["rlv"], pred).norm())
    if out["gnorm_mse"] > 0:
        out["gnorm_ratio"] = out["gnorm_av"] / out["gnorm_mse"]
    if truth is not None:
        out["cos_av_truth"] = float(descent_alignment(g_unit, pred.detach(), truth[0], truth[1], lips).mean())
    return out
