"""Animator training: baseline (FaceFormer; CodeTalker stage 1 "vq" and stage 2 "baseline") and
the AV-guided stage "av".

``avguide train --stage baseline --animator faceformer --data DIR --out RUN`` runs
:func:`train_animator`: set-up -> epochs (train, validate, checkpoint) -> done. ``--stage av``
runs the same loop with the audio-visual loss added (:mod:`avguide.train.avguidance`): every
batch's prediction is rendered, read by the stage-1 expert against its transcript, and
``l_mse L_mse + l_av (l_ctc L_ctc + l_ce L_ce) + l_rlv L_rlv`` is optimised; every
``av.probe_every`` steps the norms of d(l_av L_av)/d(pred) and d(l_mse L_mse)/d(pred) are logged
(TensorBoard ``train/gnorm_*``, ``metrics.jsonl`` ``train_gnorm_*`` epoch means).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from avguide.config import config_to_dict, load_config
from avguide.errors import BadInputError
from avguide.metrics.geometry import lve_batch
from avguide.train import distributed as D
from avguide.train.avguidance import (AVGuidance, AVGuidanceConfig, av_gradient, balanced_l_av, gradient_probe,
                                      loss_weights)
from avguide.train.checkpoint import (load_checkpoint, load_train_state, save_checkpoint, seed_everything,
                                      start_run)
from avguide.train.expert import warn_ctc_unfit
from avguide.train.logging import RunLogger
from avguide.train.losses import check_finite, combine
from avguide.train.setup import (OptimConfig, build_optimizer, clip_and_step, loaders, open_training_data,
                                 resolve_animator_config, save_run_assets)

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
        try:
            model.vqvae.load_state_dict(vq, strict=True)
        except RuntimeError as e:
            raise BadInputError(f"vq_run={cfg.vq_run}: VQ-VAE does not fit this model ({str(e)[:300]})") from None
        for p in model.vqvae.parameters():
            p.requires_grad_(False)
    if cfg.init:
        state, _, ckpt = load_checkpoint(cfg.init, "best")
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise BadInputError(f"init={cfg.init}: {ckpt} does not fit this model ({str(e)[:300]})") from None
    return model, config_to_dict(model_cfg)


def train_animator(cfg: AnimatorTrainConfig, out: str | Path, *, resume: bool = False) -> dict:
    """Train an animator (stage baseline / vq, or av with the audio-visual loss).

    Args:
        cfg: validated config.
        out: run directory (new), or the run to continue with ``resume``.
        resume: continue ``out`` exactly where its last checkpoint stopped (model, optimiser,
            epoch, RNG, data order).
    Returns:
        {"epochs", "best_val", "run"}.
    Raises:
        BadInputError / MissingFileError: bad data or run directory; TrainingDivergedError on NaN.
    """
    ctx = D.init_distributed(cfg.device)
    seed_everything(cfg.seed + ctx.rank)
    index, train_refs, val_refs = open_training_data(cfg.data, cfg.layout, max_sequences=cfg.max_sequences)
    model, model_cfg = build_model(cfg, index)
    resolved = config_to_dict(cfg) | {"model": model_cfg, "dataset": _dataset_meta(index)}
    run = Path(out)
    start_epoch, step, best = 0, 0, float("inf")
    if ctx.is_main:
        start_run(run, resolved, resume=resume)
        if not resume:
            save_run_assets(run, index)
    lips = torch.as_tensor(index.regions["lips"]) if "lips" in index.regions else None
    guide = _build_guidance(cfg, index, lips, ctx.device)
    if cfg.stage == "vq" and not resume:
        offsets = _training_offsets(index, train_refs)  # loaded once for both
        model.vqvae.motion_scale.fill_(_offset_std(offsets))
        _init_codebook(model.vqvae, offsets[:16], cfg.seed)
    model.to(ctx.device)
    opt = build_optimizer(model, cfg.optim)
    params = [p for p in model.parameters() if p.requires_grad]  # the animator's (av.balance_on=parameters)
    if guide is not None and guide.trainable:
        opt.add_param_group({"params": list(guide.expert.parameters()), "lr": cfg.av.expert_lr})
    if resume:
        state, meta, ckpt = load_checkpoint(run)
        model.load_state_dict(state)
        train_state = load_train_state(ckpt)
        opt.load_state_dict(train_state["optimizer"])
        if guide is not None and guide.trainable:
            guide.expert.load_state_dict(train_state["expert"])
        start_epoch, step, best = meta["epoch"], meta["step"], meta.get("best_val", float("inf"))
    model = D.wrap_model(model, ctx)
    expert_ddp = D.wrap_model(guide.expert, ctx) if guide is not None and guide.trainable else None
    train_loader, val_loader = loaders(index, train_refs, val_refs, cfg.optim.batch_size, cfg.seed, ctx,
                                       workers=cfg.workers, cache=cfg.cache, need_text=guide is not None)
    weights = _weights(cfg)
    log = RunLogger(run, enabled=ctx.is_main, start_step=step)
    for epoch in range(start_epoch + 1, cfg.optim.epochs + 1):
        t0 = time.perf_counter()
        _set_epoch(train_loader, epoch, cfg.seed)
        model.train()
        if guide is not None:
            guide.train(True)
        sums: dict[str, float] = {}
        probes: dict[str, float] = {}
        n_probes = 0
        bar = log.bar(len(train_loader), f"epoch {epoch}")
        for batch in train_loader:
            batch = batch.to(ctx.device)
            out = model(batch.audio, batch.audio_lengths, batch.template, batch.vertices, batch.lengths,
                        batch.subject)
            losses = dict(out["losses"])
            step_weights, step_av, g_av = weights, cfg.av, None
            probing = guide is not None and cfg.av.probe_every and step % cfg.av.probe_every == 0
            if guide is not None:
                losses.update(guide.losses(out["pred"], batch, expert_ddp))
                if cfg.av.balance > 0 or probing:  # one backward through the renderer for both
                    g_av = av_gradient(out["pred"], losses, cfg.av)
                if cfg.av.balance > 0:  # this step's l_av from the gradient norms on the prediction
                    l_av = balanced_l_av(out["pred"], losses, cfg.av, params, weights, g_av)
                    l_av = D.mean_across({"l_av": l_av}, ctx)["l_av"]
                    step_av = dataclasses.replace(cfg.av, l_av=l_av)
                    step_weights = {**weights, **loss_weights(step_av)}
            total, logs = combine(losses, step_weights)
            if guide is not None and cfg.av.balance > 0:
                logs["l_av"] = step_av.l_av
            check_finite(logs, f"epoch {epoch}, step {step + 1}")
            if probing:
                probe = gradient_probe(out["pred"], losses, step_av, guide.lips, g_av)
                logs.update(probe)
                for k, v in probe.items():
                    probes[k] = probes.get(k, 0.0) + v
                n_probes += 1
            opt.zero_grad(set_to_none=True)
            total.backward()
            if guide is not None and guide.trainable and cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(guide.expert.parameters(), cfg.optim.grad_clip)
            logs["grad_norm"] = clip_and_step(model, opt, cfg.optim)
            step += 1
            log.scalars(step, logs, "train")
            for k, v in logs.items():
                if not k.startswith("gnorm_"):
                    sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{logs['total']:.4g}")
            bar.update()
        bar.close()
        D.assert_replicas_equal(model, ctx)
        if expert_ddp is not None:
            D.assert_replicas_equal(guide.expert, ctx)
        if ctx.world_size > 1 and ctx.is_main:
            print(f"epoch {epoch}: replicas identical across {ctx.world_size} processes", flush=True)
        means = {k: v / max(1, len(train_loader)) for k, v in sums.items()}
        means |= {k: v / n_probes for k, v in probes.items()} if n_probes else {}
        train_logs = D.mean_across({f"train_{k}": v for k, v in means.items()}, ctx)
        if guide is not None:  # the share of the epoch's recordings that got no CTC guidance
            c = D.mean_across(guide.take_unfit_counts(), ctx)
            train_logs["train_ctc_unfit"] = c["ctc_unfit"] / max(c["ctc_read"], 1.0)
            if epoch == start_epoch + 1 and ctx.is_main:
                warn_ctc_unfit(train_logs["train_ctc_unfit"], guide.tokenizer_name, "They get no CTC guidance.")
        val_logs = validate(D.unwrap(model), val_loader, weights, ctx, lips) if ctx.is_main else {}
        if ctx.is_main:
            log.scalars(step, val_logs, "val")
            is_best = val_logs["val_total"] < best
            best = min(best, val_logs["val_total"])
            meta = {"epoch": epoch, "step": step, "best_val": best, **train_logs, **val_logs}
            state = {"optimizer": opt.state_dict()}
            if guide is not None and guide.trainable:
                state["expert"] = guide.expert.state_dict()
            save_checkpoint(run, D.unwrap(model), state, meta, resolved, best=is_best)
            log.epoch(epoch, step, {**train_logs, **val_logs}, time.perf_counter() - t0)
        D.barrier(ctx)
    log.close()
    D.shutdown(ctx)
    return {"epochs": cfg.optim.epochs, "best_val": best, "run": str(run)}


def _build_guidance(cfg: AnimatorTrainConfig, index, lips: torch.Tensor | None, device) -> AVGuidance | None:
    """The AV guidance of stage "av" (None for the other stages).

    Raises:
        BadInputError: the dataset has no lip region or no transcripts for the AV loss.
    """
    if cfg.stage != "av":
        return None
    if lips is None:
        raise BadInputError(f"{cfg.data}: the AV stage needs the lip vertex region (regions/lips.txt)")
    return AVGuidance(cfg.av, index.n_vertices, lips, torch.device(device))


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


def _set_epoch(loader, epoch: int, seed: int) -> None:
    """Reshuffle reproducibly per epoch, whether the run was resumed or not."""
    if isinstance(loader.sampler, torch.utils.data.DistributedSampler):
        loader.sampler.set_epoch(epoch)
    elif loader.generator is not None:
        loader.generator.manual_seed(seed * 100_003 + epoch)


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


def load_train_config(path: str | None, overrides: list[str], resume: str | None) -> AnimatorTrainConfig:
    """Config for a new run, or the saved one of ``resume`` (its resolved model config reapplied
    over the preset gives the identical model) with ``overrides`` on top (e.g. optim.epochs=80)."""
    base = None
    if resume:
        from avguide.errors import MissingFileError

        path_cfg = Path(resume) / "config.json"
        if not path_cfg.is_file():
            raise MissingFileError(f"--resume {resume}: no config.json there")
        base = {k: v for k, v in json.loads(path_cfg.read_text())["config"].items() if k != "dataset"}
    return load_config(AnimatorTrainConfig, path, overrides, base=base)
