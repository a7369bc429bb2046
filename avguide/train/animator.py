"""Animator training: baseline (FaceFormer; CodeTalker stage 1 "vq" and stage 2 "baseline") and
the AV-guided stage "av".

``avguide train --stage baseline --animator faceformer --data DIR --out RUN`` runs
:func:`train_animator`: set-up -> epochs (train, validate, checkpoint) -> done. ``--stage av``
runs the same loop with the audio-visual loss added (:mod:`avguide.train.avguidance`): every
batch's prediction is rendered, read by the stage-1 expert against its transcript, and
``l_mse L_mse + l_av (l_ctc L_ctc + l_ce L_ce) + l_rlv L_rlv`` is optimised; every
``av.probe_every`` steps the norms of d(l_av L_av)/d(pred) and d(l_mse L_mse)/d(pred) are logged
(TensorBoard ``train/gnorm_*``, ``metrics.jsonl`` ``train_gnorm_*`` epoch means).

    setup:  dataset -> animator (preset + overrides; ``init`` / ``vq_run`` weights) -> the run
            directory (:class:`avguide.train.run.Run`) -> the objective (a weighted sum, or the
            AV guidance) -> optimiser (``optim.*``), restored on resume
    train:  for each epoch, for each batch: forward -> ``objective.step`` -> backward -> clip -> step
    save:   validate (vertex losses, LVE) -> checkpoint, best by ``val_total``, metrics.jsonl
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from avguide.checkpoint import load_checkpoint, load_weights
from avguide.config import config_to_dict
from avguide.errors import BadInputError
from avguide.metrics.geometry import lve_batch
from avguide.train import distributed as D
from avguide.train.avguidance import AVGuidance, AVGuidanceConfig, loss_weights
from avguide.train.logging import EpochMeans
from avguide.train.losses import WeightedSum, check_finite, combine
from avguide.train.optim import OptimConfig, build_optimizer, clip_gradients, restore_optimizer, upgrade_saved_optim
from avguide.train.run import Run, load_run_config, setup, shuffle_for_epoch
from avguide.train.setup import loaders, open_training_data, resolve_animator_config, save_run_assets

DEFAULT_WEIGHTS = {"mse": 1.0, "reg": 1.0, "rec": 1.0, "vq": 1.0}
"""Loss weights when the config gives none (CodeTalker: rec + vq in stage 1, mse + reg in 2)."""


@dataclass
class AnimatorTrainConfig:
    """Baseline training of an animator (saved, resolved, in every checkpoint)."""

    data: str = ""
    layout: str = "auto"
    animator: Literal["faceformer", "codetalker"] = "faceformer"
    stage: Literal["baseline", "vq", "av"] = "baseline"  # vq: CodeTalker's stage 1; av: AV-guided
    preset: str = "auto"                               # auto | vocaset | biwi | tiny
    model: dict[str, Any] = field(default_factory=dict)  # overrides of the preset, resolved at start
    vq_run: str = ""                                   # CodeTalker stage 2: the trained VQ-VAE run
    init: str = ""                                     # optional animator run to start from (same model)
    av: AVGuidanceConfig = field(default_factory=AVGuidanceConfig)  # stage "av" only
    loss_weights: dict[str, float] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    cache: bool = True                                 # keep loaded recordings in memory
    max_sequences: int = 0                             # limit the train split (quick runs); 0 = all

    def check(self) -> list[str]:
        errors = []
        if not self.data:
            errors.append("data: the dataset directory is required (--data DIR)")
        if self.stage == "vq" and self.animator != "codetalker":
            errors.append("stage: 'vq' is CodeTalker's first stage; FaceFormer has none")
        if self.animator == "codetalker" and self.stage in ("baseline", "av") and not self.vq_run:
            errors.append("vq_run: CodeTalker's baseline needs its trained VQ-VAE: run "
                          "`avguide train --stage vq --animator codetalker` first and pass vq_run=RUN")
        if self.stage == "av" and not self.av.expert:
            errors.append("av.expert: the AV stage needs a stage-1 expert run (--expert RUN, from "
                          "`avguide train --stage expert`)")
        if self.device not in ("auto", "cpu", "cuda"):
            errors.append(f"device: {self.device!r} is not one of auto, cpu, cuda")
        if self.workers < 0 or self.max_sequences < 0:
            errors.append("workers and max_sequences: must be >= 0")
        if any(not isinstance(v, (int, float)) for v in self.loss_weights.values()):
            errors.append("loss_weights: values must be numbers")
        return errors


def _weights(cfg: AnimatorTrainConfig) -> dict[str, float]:
    """Per-term weights: defaults, then (stage av) the av.l_* weights, then ``loss_weights``."""
    av = loss_weights(cfg.av) if cfg.stage == "av" else {}
    return {**DEFAULT_WEIGHTS, **av, **{k: float(v) for k, v in cfg.loss_weights.items()}}


def build_model(cfg: AnimatorTrainConfig, index) -> tuple[torch.nn.Module, dict]:
    """The animator for this run and its resolved config dict."""
    from avguide.animators import build_animator

    stage = 1 if cfg.stage == "vq" else 2
    model_cfg = resolve_animator_config(cfg.animator, cfg.preset, cfg.model, fps=index.fps,
                                        n_vertices=index.n_vertices, stage=stage)
    model = build_animator(model_cfg, index.n_vertices, len(index.train_subjects))
    if cfg.animator == "codetalker" and stage == 2:
        state, meta, ckpt = load_checkpoint(cfg.vq_run, "best")
        vq = {k[len("vqvae."):]: v for k, v in state.items() if k.startswith("vqvae.")}
        if not vq:
            raise BadInputError(f"vq_run={cfg.vq_run}: {ckpt} holds no VQ-VAE weights")
        load_weights(model.vqvae, vq, ckpt / "model.safetensors", f"vq_run={cfg.vq_run}: the VQ-VAE weights")
        for p in model.vqvae.parameters():
            p.requires_grad_(False)
    if cfg.init:
        state, _, ckpt = load_checkpoint(cfg.init, "best")
        load_weights(model, state, ckpt / "model.safetensors", f"init={cfg.init}: the weights")
    return model, config_to_dict(model_cfg)


def train_animator(cfg: AnimatorTrainConfig, out: str | Path, *, resume: bool = False) -> dict:
    """Train an animator (stage baseline / vq, or av with the audio-visual loss).

    Args:
        cfg: validated config (:func:`load_train_config`).
        out: run directory (new), or the run to continue with ``resume``.
        resume: continue ``out`` exactly where its last checkpoint stopped (model, optimiser,
            epoch, RNG, data order); a run without a checkpoint starts again.
    Returns:
        {"epochs", "best_val", "run"}.
    Raises:
        BadInputError / MissingFileError: bad data or run directory (another process training it,
        corrupt files); TrainingDivergedError on NaN.
    """
    # ---- setup
    ctx = setup(cfg.device, cfg.seed)
    index, train_refs, val_refs = open_training_data(cfg.data, cfg.layout, max_sequences=cfg.max_sequences)
    model, model_cfg = build_model(cfg, index)
    resolved = config_to_dict(cfg) | {"model": model_cfg, "dataset": _dataset_meta(index)}
    lips = torch.as_tensor(index.regions["lips"]) if "lips" in index.regions else None
    # the objective loads the AV stage's expert: a wrong av.expert is refused before the run directory is made
    objective = _objective(cfg, index, lips, ctx, [p for p in model.parameters() if p.requires_grad])
    with Run(out, resolved, ctx, resume=resume, min_improvement=cfg.optim.min_improvement) as run:
        if run.step == 0:  # a fresh start
            if ctx.is_main:
                save_run_assets(run.path, index)
            if cfg.stage == "vq":
                offsets = _training_offsets(index, train_refs)  # loaded once for both
                model.vqvae.motion_scale.fill_(_offset_std(offsets))
                _init_codebook(model.vqvae, offsets[:16], cfg.seed)
        model.to(ctx.device)
        train_loader, val_loader = loaders(index, train_refs, val_refs, cfg.optim.batch_size, cfg.seed, ctx,
                                           workers=cfg.workers, cache=cfg.cache, need_text=cfg.stage == "av")
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}, *objective.param_groups()]
        opt, sched = build_optimizer(groups, cfg.optim, len(train_loader))
        train_state = run.restore(model)
        if train_state is not None:
            restore_optimizer(opt, sched, train_state, cfg.optim, [cfg.optim.lr] + [g["lr"] for g in groups[1:]],
                              len(train_loader), run.checkpoint)
            objective.load_state_dict(train_state, run.checkpoint)
        step, best = run.step, run.best_score
        model = D.wrap_model(model, ctx)
        weights = _weights(cfg)

        # ---- train
        for epoch in range(run.epoch + 1, cfg.optim.epochs + 1):
            if D.from_main(run.stalled(cfg.optim.patience), ctx):
                break
            t0 = time.perf_counter()
            shuffle_for_epoch(train_loader, epoch, cfg.seed)
            model.train()
            objective.train(True)
            means = EpochMeans()
            bar = run.log.bar(len(train_loader), f"epoch {epoch}")
            for batch in train_loader:
                batch = batch.to(ctx.device)
                out = model(batch.audio, batch.audio_lengths, batch.template, batch.vertices, batch.lengths,
                            batch.subject)
                backward, logs = objective.step(out["pred"], batch, dict(out["losses"]), step)
                check_finite(logs, f"epoch {epoch}, step {step + 1}")
                opt.zero_grad(set_to_none=True)
                backward()
                logs["grad_norm"] = float(clip_gradients([p for p in model.parameters() if p.grad is not None],
                                                         cfg.optim.grad_clip))
                opt.step()
                if sched is not None:
                    sched.step()
                step += 1
                run.log.scalars(step, logs, "train")
                means.add(logs)
                bar.set_postfix(loss=f"{logs['total']:.4g}")
                bar.update()
            bar.close()
            D.assert_replicas_equal(model, ctx)
            if ctx.world_size > 1 and ctx.is_main:
                print(f"epoch {epoch}: replicas identical across {ctx.world_size} processes", flush=True)
            train_logs = D.mean_across(means.means("train_"), ctx)
            train_logs |= {f"train_{k}": v for k, v in objective.end_epoch(epoch == run.epoch + 1).items()}

            # ---- save
            if ctx.is_main:
                val_logs = validate(D.unwrap(model), val_loader, weights, ctx, lips)
                run.log.scalars(step, val_logs, "val")
                best = min(best, val_logs["val_total"])
                state = {"optimizer": opt.state_dict(), **objective.state_dict()}
                if sched is not None:
                    state["scheduler"] = sched.state_dict()
                run.save(D.unwrap(model), state, epoch=epoch, step=step, metrics={**train_logs, **val_logs},
                         score=val_logs["val_total"], seconds=time.perf_counter() - t0, extra={"best_val": best})
            D.barrier(ctx)
    D.shutdown(ctx)
    return {"epochs": run.epoch, "best_val": best, "run": str(run.path)}


def _objective(cfg: AnimatorTrainConfig, index, lips: torch.Tensor | None, ctx: D.DistContext,
               params: list[torch.Tensor]) -> WeightedSum | AVGuidance:
    """What a training step optimises: the weighted sum of the animator's terms, or in stage "av"
    the AV guidance (:class:`AVGuidance`: the expert reads the renders).

    Raises:
        BadInputError: the AV stage on a dataset without a lip region.
    """
    if cfg.stage != "av":
        return WeightedSum(_weights(cfg))
    if lips is None:
        raise BadInputError(f"{cfg.data}: the AV stage needs the lip vertex region (regions/lips.txt)")
    return AVGuidance(cfg.av, index.n_vertices, lips, ctx.device, weights=_weights(cfg), params=params, ctx=ctx,
                      grad_clip=cfg.optim.grad_clip)


def _training_offsets(index, refs, max_recordings: int = 32) -> list:
    """Vertex offsets from the template, (T, V, 3) arrays, of (up to 32 of) the training recordings."""
    from avguide.data.samples import load_vertices

    return [load_vertices(ref.vertices, index.n_vertices, index.stride) - index.templates[ref.subject]
            for ref in refs[:max_recordings]]


def _offset_std(offsets: list) -> float:
    """Std (RMS) of vertex offsets from the template."""
    sq = sum(float((off.astype("float64") ** 2).sum()) for off in offsets)
    n = sum(off.size for off in offsets)
    return max((sq / max(n, 1)) ** 0.5, 1e-8)


def _init_codebook(vqvae, offsets: list, seed: int) -> None:
    """Start the VQ-VAE's codebook at its encoder's outputs on these (T, V, 3) offset sequences."""
    seqs = [torch.from_numpy(o).float().flatten(1) for o in offsets]  # (T, V*3) each
    lengths = torch.tensor([len(o) for o in seqs])
    padded = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)  # (B, T, V*3)
    vqvae.init_codebook(padded, lengths, torch.Generator().manual_seed(seed))


@torch.no_grad()
def validate(model: torch.nn.Module, loader, weights: dict[str, float], ctx: D.DistContext,
             lips: torch.Tensor | None) -> dict[str, float]:
    """Mean losses over the val split (unseen subjects speak in training subject 0's style), and
    the lip vertex error LVE (m^2) of the model's prediction. The AV terms are not computed here
    (stage av selects its best checkpoint by the same vertex loss as the baseline)."""
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    lve_num, lve_den = 0.0, 0
    for batch in loader:
        batch = batch.to(ctx.device)
        subject = batch.subject.clamp(min=0)
        out = model(batch.audio, batch.audio_lengths, batch.template, batch.vertices, batch.lengths, subject)
        _, logs = combine(out["losses"], weights)
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v * len(batch.names)
        n += len(batch.names)
        if lips is not None:
            frames = int(batch.lengths.sum())
            lve_num += lve_batch(out["pred"].cpu(), batch.vertices.cpu(), lips, batch.lengths.cpu()) * frames
            lve_den += frames
    res = {f"val_{k}": v / max(1, n) for k, v in sums.items()}
    if lve_den:
        res["val_lve"] = lve_num / lve_den
    return res


def _dataset_meta(index) -> dict:
    return {"root": str(index.root), "layout": index.layout, "fps": index.fps, "n_vertices": index.n_vertices,
            "train_subjects": list(index.train_subjects)}


RESUMABLE = ("optim.lr", "optim.betas", "optim.weight_decay", "optim.epochs", "optim.grad_clip",
             "optim.warmup_epochs", "optim.patience", "optim.min_improvement", "loss_weights.", "av.l_mse", "av.l_av",
             "av.l_ctc", "av.l_ce", "av.l_rlv", "av.expert_lr", "av.balance", "av.balance_on", "av.probe_every",
             "av.face_slack", "av.render_workers", "av.render_compile", "device", "workers", "cache")
"""What a resumed run may change (applied from its first step); anything else (the model, the data,
the seed, the stage, the expert, the batch size, the optimiser or schedule kind) is refused."""


def _upgrade(saved: dict) -> dict:
    """A saved animator config as a config of today (``dataset`` is a record, not a setting)."""
    return {k: v for k, v in upgrade_saved_optim(saved, "animator").items() if k != "dataset"}


def load_train_config(path: str | None, overrides: list[str], resume: str | Path | None) -> AnimatorTrainConfig:
    """Config for a new run, or the saved one of ``resume`` (its resolved model config reapplied
    over the preset gives the identical model) with ``overrides`` on top (e.g. optim.epochs=80):
    :data:`RESUMABLE` keys are applied, any other change is refused.

    Raises:
        BadInputError / MissingFileError: invalid values; no run to resume; a refused change.
    """
    return load_run_config(AnimatorTrainConfig, path, overrides, resume, may_change=RESUMABLE, upgrade=_upgrade)
