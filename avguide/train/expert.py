"""Stage 1: train or fine-tune the lip-reading expert on renders of ground-truth meshes.

    setup:  dataset -> render assets, tokeniser, expert (preset + overrides; ``init`` weights)
    train:  for each epoch, for each batch of training recordings:
              GT lip video from the render cache (rendered once, uint8)   (B, T25, 1, c, c)
              16 kHz audio, augmented (noise, time masks, dropout)        (B, T25 * 640)   [AV]
              optional speed perturbation of both (audio resampled, video retimed)
              loss = mtlalpha * CTC + (1 - mtlalpha) * attention CE  -> optim.* (AdamW, warmup + cosine)
            validation CER (greedy CTC; clean audio, and for AV also zeroed audio)
              -> checkpoint (best by ``best_on``: clean CER, or for AV the mean of both)
    save:   RUN/ckpt-*/ (weights, optimiser/scheduler/RNG, meta.json with the config, expert
            hyper-parameters, tokeniser and video settings), RUN/render_assets.npz, metrics.jsonl
            (the run directory: :class:`avguide.train.run.Run`)

``modality: video`` trains the visual-only expert, i.e. the evaluation reader (its camera rule
defaults to the sequence mean, the reader's rule; see :mod:`avguide.lipreader.reader`).
``modality: audio`` trains an audio-only model (no rendering, no video front-end: several times
cheaper per step) whose encoder then initialises an AV expert's audio encoder (``init_audio``),
as Auto-AVSR builds its AV model from separately trained audio and visual encoders.
Entry point for the CLI: :func:`run_expert_stage`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from avguide.config import config_to_dict, flag_overrides
from avguide.data.batching import Batch, RecordingDataset, collate, make_loader
from avguide.data.samples import check_recordings
from avguide.data.layouts import open_dataset
from avguide.errors import BadInputError
from avguide.lipreader.checkpoint import load_auto_avsr_checkpoint
from avguide.lipreader.config import ExpertConfig, Modality
from avguide.lipreader.lipvideo import assets_from_dataset, save_assets
from avguide.lipreader.losses import warn_ctc_unfit
from avguide.lipreader.model import LipReadingExpert, build_expert
from avguide.lipreader.preprocess import SAMPLES_PER_FRAME, align_audio, normalize_audio
from avguide.lipreader.reader import decode_batch, expert_meta, load_trained_expert, make_tokenizer
from avguide.lipreader.render_cache import RenderCache
from avguide.lipreader.tokenizers import pad_targets
from avguide.metrics.text import EditCounts, char_counts, word_counts
from avguide.presets import expert_preset
from avguide.train import distributed as dist
from avguide.train.audio_augment import (AudioAugmentConfig, augment_audio, change_speed, draw_speeds,
                                         retime_frames)
from avguide.train.logging import EpochMeans
from avguide.train.losses import check_finite, combine
from avguide.train.optim import (FLAT_OPTIM_KEYS, OptimConfig, build_optimizer, clip_gradients, expert_optim,
                                 restore_optimizer, upgrade_saved_optim)
from avguide.train.run import Run, load_run_config, setup, shuffle_for_epoch


@dataclass
class ExpertStageConfig:
    """Stage-1 settings (saved in every checkpoint).

    Attributes:
        data: dataset root (:func:`avguide.data.layouts.open_dataset`).
        modality: "av" (audio-visual expert, the stage-2 loss), "video" (visual-only: the
            evaluation reader) or "audio" (audio-only, to pretrain the AV expert's audio encoder).
        size: "cpu_small" (``avsr_cpu_small`` / ``vsr_cpu_small``) or "base" (Auto-AVSR base,
            88x88).
        expert: overrides of :class:`avguide.lipreader.config.ExpertConfig` fields
            (e.g. ``expert.elayers=2``).
        tokenizer: "spm" (Auto-AVSR's 5000 SentencePiece units; "auto" is a synonym, saved as
            "spm") or "char" (characters). The encoders run at 25 fps and CTC needs a frame per token (two for a
            repeat): fast speech has more characters than that (Synth12, 200 wpm: 25.2
            characters but 6.1 units per second), so those utterances get no CTC loss.
        init: weights to start from: an avguide run/checkpoint directory, or an Auto-AVSR
            ``.pth`` (``size=base``); null trains from scratch. Weights of another modality's
            expert load where names and shapes fit (a visual-only run fills an AV expert's
            visual encoder, CTC head and decoder).
        init_audio: AV only: an audio-only run (``modality=audio``) whose encoder initialises the
            audio encoder (``aux_encoder``), after ``init``; without ``init``, or with
            ``expert.fusion_residual=true`` (the fused features start as the audio features), its
            CTC head and decoder are loaded too.
        freeze_audio: AV only: keep the audio encoder as loaded (no updates, batch-norm
            statistics and dropout in eval mode), so that fine-tuning on a few speakers cannot
            wear away what a larger audio corpus taught it; needs ``init_audio`` or ``init``.
        freeze_heads: keep the CTC head and the attention decoder (and its projection) as loaded,
            training only the encoders and the fusion that feed them; needs ``init`` or
            ``init_audio``. With ``freeze_audio`` and ``expert.fusion_residual=true`` only the
            visual encoder and the fusion learn: an adapter that adds what the lips say to a
            fixed audio reader.
        crop: lip crop side; 0 = auto (44 for cpu_small: 48x48 render -> 44x44; 88 for base:
            96 -> 88).
        camera: lip camera rule; "auto" = "template" for av, "sequence_mean" for video.
        cache_dir: render cache root shared by runs; null = ``RUN/render_cache``.
        train_split, val_split: dataset splits.
        optim: optimiser, schedule and epochs (:class:`avguide.train.optim.OptimConfig`; defaults
            :func:`~avguide.train.optim.expert_optim`: AdamW (0.9, 0.98), weight decay 0.03, lr
            1e-3 with 3 warm-up epochs then cosine, gradient norm clip 5, batch 8, 60 epochs).
        seed: random seed.
        val_max: validate on at most this many recordings (0 = all).
        best_on: what picks the best checkpoint: "clean" (validation CER with the audio as
            recorded), "clean_and_dropped" (AV only: the mean of that and the CER with the audio
            zeroed, so that the chosen expert also reads lips) or "auto" (clean_and_dropped for
            av, clean otherwise). Both CERs are logged for AV.
        device: "auto", "cpu" or "cuda".
        audio: augmentation of the training batches: speed perturbation (all modalities; off by
            default), noise and time masks (AV and audio), whole-utterance dropout (AV).
    """

    data: str = ""
    modality: Modality = "av"
    size: Literal["cpu_small", "base"] = "cpu_small"
    expert: dict[str, Any] = field(default_factory=dict)
    tokenizer: Literal["auto", "char", "spm"] = "spm"
    init: str | None = None
    init_audio: str | None = None
    freeze_audio: bool = False
    freeze_heads: bool = False
    crop: int = 0
    camera: Literal["auto", "template", "sequence_mean"] = "auto"
    cache_dir: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    optim: OptimConfig = field(default_factory=expert_optim)
    seed: int = 0
    val_max: int = 0
    best_on: Literal["auto", "clean", "clean_and_dropped"] = "auto"
    device: str = "auto"
    audio: AudioAugmentConfig = field(default_factory=AudioAugmentConfig)

    def __post_init__(self):
        if self.tokenizer == "auto":  # a synonym: the resolved config says what the run reads
            self.tokenizer = "spm"

    def check(self) -> list[str]:
        errs = []
        if not self.data:
            errs.append("data: the dataset directory is required (--data DIR)")
        if self.crop < 0 or (self.crop and self.crop < 16):
            errs.append(f"crop: 0 (auto) or >= 16 pixels, got {self.crop}")
        if self.val_max < 0:
            errs.append(f"val_max: must be >= 0, got {self.val_max}")
        names = {f.name for f in dataclasses.fields(ExpertConfig)} - {"modality", "odim"}
        bad = sorted(set(self.expert) - names)
        if bad:
            errs.append(f"expert: unknown field(s) {bad}; allowed: {', '.join(sorted(names))}")
        if self.init and self.init.endswith((".pth", ".pt", ".ckpt")) and self.size != "base":
            errs.append("init: an Auto-AVSR .pth needs size=base")
        if self.init_audio and self.modality != "av":
            errs.append(f"init_audio: only for modality=av (the audio-visual expert), got modality={self.modality}")
        if self.freeze_heads and not (self.init_audio or self.init):
            errs.append("freeze_heads: needs init or init_audio (frozen untrained heads would read nothing)")
        if self.freeze_audio and (self.modality != "av" or not (self.init_audio or self.init)):
            errs.append("freeze_audio: only for modality=av with init_audio or init (a frozen untrained audio "
                        "encoder would read nothing)")
        if self.best_on == "clean_and_dropped" and self.modality != "av":
            errs.append(f"best_on=clean_and_dropped: only for modality=av, got modality={self.modality}")
        return errs

    # resolved values -------------------------------------------------------------------------
    def crop_size(self) -> int:
        return self.crop or (88 if self.size == "base" else 44)

    def camera_rule(self) -> str:
        if self.camera != "auto":
            return self.camera
        return "template" if self.modality == "av" else "sequence_mean"

    def best_on_rule(self) -> str:
        if self.best_on != "auto":
            return self.best_on
        return "clean_and_dropped" if self.modality == "av" else "clean"

    def tokenizer_name(self) -> str:
        return self.tokenizer

    def expert_config(self, odim: int) -> ExpertConfig:
        """The expert's hyper-parameters: preset of ``modality`` x ``size``, then ``expert``."""
        over = {k: (tuple(x) if isinstance(x, list) else x) for k, x in self.expert.items()}
        return dataclasses.replace(expert_preset(self.modality, self.size, odim), **over).validate()


def expert_inputs(batch: Batch, cache: RenderCache | None, modality: str, audio_mode: str,
                  aug: AudioAugmentConfig | None, device: torch.device) -> dict[str, torch.Tensor | None]:
    """Video (cached GT renders) and audio (aligned, optionally augmented/dropped, normalised).

    Args:
        batch: the collated recordings. cache: GT render cache (unused for "audio").
        modality: "av", "video" or "audio". audio_mode: "clean", "augment" (training) or "dropped"
            (zeros).
        aug: augmentation settings ("augment" only). device: target device.
    Returns:
        {"video", "video_lengths", "audio", "audio_lengths"} (audio None for video-only).
    """
    audio, alen = batch.audio, batch.audio_lengths
    speeds = draw_speeds(len(batch.names), aug) if audio_mode == "augment" else None
    retimed = speeds is not None and bool((speeds != 1).any())
    if retimed:  # audio and video together, before the audio is cut to the frames
        audio, alen = change_speed(audio, alen, speeds)
    if modality == "audio":  # 25 fps frames of whole 640-sample blocks; no video, no dropout
        video, vlen = None, torch.div(alen, SAMPLES_PER_FRAME, rounding_mode="floor").clamp_min(1)
        aug = dataclasses.replace(aug, dropout_prob=0.0) if aug is not None else None
    else:
        video, vlen = cache.video(batch, device)
        if retimed:
            video, vlen = retime_frames(video, vlen, speeds)
    if modality == "video":
        return {"video": video, "video_lengths": vlen, "audio": None, "audio_lengths": None}
    audio, alen = align_audio(audio, alen, vlen.cpu())
    if audio_mode == "augment":
        audio, _ = augment_audio(audio, alen, aug)
    elif audio_mode == "dropped":
        audio = torch.zeros_like(audio)
    return {"video": video, "video_lengths": vlen.to(device), "audio": normalize_audio(audio, alen).to(device),
            "audio_lengths": alen.to(device)}


def _load_init(model: LipReadingExpert, init: str) -> None:
    """Initial weights: an Auto-AVSR .pth file, or an avguide stage-1 run/checkpoint."""
    path = Path(init)
    if path.is_file():
        load_auto_avsr_checkpoint(path, model)
        return
    src = load_trained_expert(path, "best").model
    if dataclasses.asdict(src.cfg) != dataclasses.asdict(model.cfg):
        state = src.state_dict()
        if src.cfg.modality == "audio" and model.cfg.modality != "audio":  # an audio encoder is no visual one
            state = {k: v for k, v in state.items() if not k.startswith("encoder.")}
        if src.cfg.fusion_residual != model.cfg.fusion_residual:  # a fusion of the other kind does not fit
            state = {k: v for k, v in state.items() if not k.startswith("fusion.")}
        _load_fitting(model, state, f"init {init}")  # e.g. a visual-only expert into an AV one
    else:
        model.load_state_dict(src.state_dict())


def _load_fitting(model: LipReadingExpert, state: dict[str, torch.Tensor], what: str) -> None:
    """Load the entries of ``state`` whose names and shapes fit ``model``.

    Raises:
        BadInputError: none fits.
    """
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fits:
        raise BadInputError(f"{what}: no weight fits this expert")
    model.load_state_dict(fits, strict=False)
    # e.g. another tokeniser: the vocabulary-sized CTC head, decoder embedding and output start afresh
    unfit = sorted({k.rsplit(".", 1)[0] for k, v in state.items() if k in own and own[k].shape != v.shape})
    if unfit:
        print(f"{what}: {len(fits)} of {len(state)} tensors loaded; these layers differ in shape and keep their "
              f"fresh initialisation: {', '.join(unfit)}", flush=True)


def _load_init_audio(model: LipReadingExpert, init_audio: str, with_heads: bool) -> None:
    """An audio-only run's encoder into an AV expert's ``aux_encoder`` (all of it, or an error),
    and with ``with_heads`` its CTC head, decoder projection and decoder where they fit."""
    src = load_trained_expert(init_audio, "best").model
    if src.cfg.modality != "audio":
        raise BadInputError(f"init_audio={init_audio}: not an audio-only run (its modality is "
                            f"{src.cfg.modality!r}; train one with --modality audio)")
    enc = {f"aux_encoder.{k[len('encoder.'):]}": v for k, v in src.state_dict().items() if k.startswith("encoder.")}
    own = model.state_dict()
    bad = [k for k, v in enc.items() if k not in own or own[k].shape != v.shape]
    bad += [k for k in own if k.startswith("aux_encoder.") and k not in enc]
    if bad:
        raise BadInputError(f"init_audio={init_audio}: its encoder does not fit this expert's audio encoder "
                            f"(e.g. {bad[:3]}); use the same aux_* fields and audio_widths")
    model.load_state_dict(enc, strict=False)
    if with_heads:
        heads = {k: v for k, v in src.state_dict().items() if k.startswith(("ctc.", "decoder.", "proj_decoder."))}
        if heads:
            _load_fitting(model, heads, f"init_audio={init_audio}")


def evaluate_split(model: LipReadingExpert, index, refs, cache: RenderCache | None, tokenizer, modality: str, *,
                   audio_mode: str = "clean", decode: str = "greedy", beam_size: int = 10, ctc_weight: float = 0.1,
                   ctc_prune: float | None = None, length_bonus: float = 0.0, batch_size: int = 8,
                   device: torch.device | str = "cpu") -> dict:
    """CER / WER of an expert on GT renders of some recordings.

    Args:
        model: the expert (set to eval mode here). index: the dataset. refs: recordings.
        cache: GT render cache (its crop/camera must be the expert's; None for "audio").
        tokenizer: its tokeniser. modality: "av", "video" or "audio". audio_mode: "clean" or
        "dropped" (AV only).
        decode: "greedy" or "beam". beam_size, ctc_weight, ctc_prune, length_bonus: beam width, CTC weight,
        CTC candidate pruning and per-token score bonus of the joint beam search. batch_size: recordings per batch.
    Returns:
        {"cer", "wer" (corpus rates), "char_edits", "chars", "word_edits", "words" (their counts), "n",
        "hyps": {name: text}}.
    """
    model.eval()
    ds = RecordingDataset(index, refs, need_text=True)
    cc, wc, hyps = EditCounts(), EditCounts(), {}  # an empty shard (DDP, tiny val split) counts 0/0
    with torch.no_grad():
        for s in range(0, len(ds), batch_size):
            batch = collate([ds[i] for i in range(s, min(len(ds), s + batch_size))])
            x = expert_inputs(batch, cache, modality, audio_mode, None, torch.device(device))
            enc = model.encode(**x)
            texts = decode_batch(model, enc, tokenizer, decode, beam_size, ctc_weight, ctc_prune, length_bonus)
            for name, ref, text in zip(batch.names, batch.texts, texts):
                hyps[name] = text
                cc += char_counts(ref, text)
                wc += word_counts(ref, text)
    return {"cer": cc.rate, "wer": wc.rate, "char_edits": cc.edits, "chars": cc.ref_len, "word_edits": wc.edits,
            "words": wc.ref_len, "n": len(ds), "hyps": hyps}


def _frozen_parts(model: LipReadingExpert, cfg: ExpertStageConfig) -> list[torch.nn.Module]:
    """The modules ``freeze_audio`` / ``freeze_heads`` keep as loaded."""
    parts = [model.aux_encoder] if cfg.freeze_audio else []
    if cfg.freeze_heads:
        parts += [m for m in (model.ctc, model.decoder, model.proj_decoder) if m is not None]
    return parts


def _validate(model: LipReadingExpert, index, refs, cache: RenderCache | None, tok, cfg: ExpertStageConfig,
              ctx: dist.DistContext, audio_mode: str) -> tuple[float, float]:
    """Corpus CER and WER (greedy) on the validation recordings, each rank reading its shard."""
    val = evaluate_split(model, index, refs[ctx.rank:: ctx.world_size], cache, tok, cfg.modality,
                         audio_mode=audio_mode, batch_size=cfg.optim.batch_size, device=ctx.device)
    c = dist.mean_across({k: float(val[k]) for k in ("char_edits", "chars", "word_edits", "words")}, ctx)
    return c["char_edits"] / max(c["chars"], 1.0), c["word_edits"] / max(c["words"], 1.0)


def train_expert(cfg: ExpertStageConfig, out_dir: str | Path, resume: bool = False) -> Path:
    """Train (or fine-tune) the expert on GT renders; see the module docstring.

    Args:
        cfg: the stage config (validated by :func:`avguide.config.load_config`).
        out_dir: run directory (new, or an existing run with ``resume``).
        resume: continue the run in ``out_dir`` from its last checkpoint, exactly (a run without
            a checkpoint starts again).
    Returns:
        The run directory.
    Raises:
        BadInputError / MissingFileError: bad data, run directory (another process training it,
            corrupt files) or init weights.
        TrainingDivergedError: a non-finite loss (the last checkpoint is kept).
    """
    # ---- setup
    ctx = setup(cfg.device, cfg.seed)
    index = open_dataset(cfg.data)
    assets = assets_from_dataset(index)
    tok = make_tokenizer(cfg.tokenizer_name())
    ecfg = cfg.expert_config(tok.odim)
    crop, rule = cfg.crop_size(), cfg.camera_rule()
    # the data and an explicit render cache are checked before the run directory is made
    train_refs, val_refs = index.split(cfg.train_split), index.split(cfg.val_split)
    if not train_refs or not val_refs:
        raise BadInputError(f"{cfg.data}: split {cfg.train_split!r} has {len(train_refs)} and "
                            f"{cfg.val_split!r} {len(val_refs)} recordings; both must be non-empty")
    if cfg.val_max:
        val_refs = val_refs[: cfg.val_max]
    check_recordings(index, train_refs + val_refs)
    cache = None
    if cfg.modality != "audio" and cfg.cache_dir:
        cache = RenderCache(assets, crop, rule, cfg.cache_dir)
    with Run(out_dir, config_to_dict(cfg), ctx, resume=resume, min_improvement=cfg.optim.min_improvement) as run:
        if run.step == 0 and ctx.is_main:
            save_assets(run.path / "render_assets.npz", assets)
        if cfg.modality != "audio" and cache is None:
            cache = RenderCache(assets, crop, rule, run.path / "render_cache")
        train_set = RecordingDataset(index, train_refs, need_text=True)
        sampler = None
        if ctx.world_size > 1:
            sampler = torch.utils.data.DistributedSampler(train_set, ctx.world_size, ctx.rank, shuffle=True,
                                                          seed=cfg.seed)
        loader = make_loader(train_set, cfg.optim.batch_size, shuffle=True, seed=cfg.seed, sampler=sampler)

        model = build_expert(ecfg)
        for part in _frozen_parts(model, cfg):
            part.requires_grad_(False)
        trained = [p for p in model.parameters() if p.requires_grad]
        opt, sched = build_optimizer([{"params": trained}], cfg.optim, len(loader))
        train_state = run.restore(model)
        if train_state is not None:
            restore_optimizer(opt, sched, train_state, cfg.optim, [cfg.optim.lr], len(loader), run.checkpoint)
        else:
            if cfg.init:
                _load_init(model, cfg.init)
            if cfg.init_audio:
                # a residual fusion starts at the audio features, which the audio run's heads read
                _load_init_audio(model, cfg.init_audio, with_heads=not cfg.init or ecfg.fusion_residual)
        step = run.step
        model = dist.wrap_model(model, ctx)
        weights = {"ctc": ecfg.mtlalpha, "att": 1.0 - ecfg.mtlalpha}

        # ---- train
        for epoch in range(run.epoch + 1, cfg.optim.epochs + 1):
            if dist.from_main(run.stalled(cfg.optim.patience), ctx):
                break
            t0, rs0 = time.perf_counter(), cache.render_seconds if cache else 0.0
            shuffle_for_epoch(loader, epoch, cfg.seed)
            model.train()
            for part in _frozen_parts(dist.unwrap(model), cfg):
                part.eval()  # batch-norm statistics stay as loaded, no dropout
            means = EpochMeans()
            bar = run.log.bar(len(loader), f"epoch {epoch}")
            for batch in loader:
                x = expert_inputs(batch, cache, cfg.modality, "augment", cfg.audio, ctx.device)
                targets = pad_targets([tok.encode(t) for t in batch.texts]).to(ctx.device)
                out = model(**x, targets=targets)
                total, logs = combine({"ctc": out["loss_ctc"], "att": out["loss_att"]}, weights)
                check_finite(logs, f"epoch {epoch}, step {step}")
                opt.zero_grad(set_to_none=True)
                total.backward()
                if cfg.optim.grad_clip:
                    clip_gradients(trained, cfg.optim.grad_clip)
                opt.step()
                if sched is not None:
                    sched.step()
                step += 1
                logs["acc"] = float(out["acc"])
                logs["ctc_unfit"] = float(out["ctc_unfit"]) / len(batch.names)  # share of the batch
                means.add(logs)
                run.log.scalars(step, logs, "train")
                bar.update(1)
                bar.set_postfix(loss=f"{logs['total']:.3f}")
            bar.close()
            train_logs = dist.mean_across(means.means("train_"), ctx)
            if epoch == run.epoch + 1 and ctx.is_main:
                warn_ctc_unfit(train_logs["train_ctc_unfit"], cfg.tokenizer_name())

            # ---- save
            cer, wer = _validate(dist.unwrap(model), index, val_refs, cache, tok, cfg, ctx, "clean")
            values = {**train_logs, "val_cer": cer, "val_wer": wer, "lr": opt.param_groups[0]["lr"],
                      "render_s": cache.render_seconds - rs0 if cache else 0.0}
            score = cer
            if cfg.modality == "av":
                values["val_cer_dropped"], values["val_wer_dropped"] = _validate(
                    dist.unwrap(model), index, val_refs, cache, tok, cfg, ctx, "dropped")
                if cfg.best_on_rule() == "clean_and_dropped":
                    score = values["val_select"] = (cer + values["val_cer_dropped"]) / 2
            state = {"optimizer": opt.state_dict(), **({"scheduler": sched.state_dict()} if sched else {})}
            run.log.scalars(step, values, "epoch")
            run.save(dist.unwrap(model), state, epoch=epoch, step=step, metrics=values, score=score,
                     seconds=time.perf_counter() - t0, extra=expert_meta(ecfg, cfg.tokenizer_name(), crop, rule))
            dist.barrier(ctx)
    dist.shutdown(ctx)
    return run.path


RESUMABLE = ("optim.lr", "optim.betas", "optim.weight_decay", "optim.epochs", "optim.grad_clip",
             "optim.warmup_epochs", "optim.patience", "optim.min_improvement", "audio.", "device", "cache_dir")
"""What a resumed expert run may change (applied from its first step): the optimiser's rates and
budget, the audio augmentation, where it runs and where renders are cached. Anything else (the
expert's shape, the tokeniser, the data and splits, the crop and camera, the seed, the batch
size, what is frozen, how the best checkpoint is chosen) is refused."""


def _upgrade(saved: dict) -> dict:
    """A saved stage-1 config as a config of today: the flat optimiser keys of runs started
    before ``optim.*`` existed move into ``optim`` (:func:`avguide.train.optim.upgrade_saved_optim`)."""
    return upgrade_saved_optim(saved, "expert")


def run_expert_stage(data: str | None, out: str | Path, *, modality: str | None = None, init: str | None = None,
                     config_path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                     resume: bool = False) -> Path:
    """What ``avguide train --stage expert`` calls.

    Args:
        data: ``--data DIR`` (may be omitted when resuming or set in the YAML file).
        out: ``--out RUN`` (or the run to resume).
        modality: ``--modality {av,video,audio}`` (None: the config's, default av).
        init: ``--init CKPT`` (avguide run/checkpoint or Auto-AVSR .pth).
        config_path: optional YAML file of :class:`ExpertStageConfig` fields.
        overrides: ``key=value`` strings (e.g. ``optim.epochs=30``, ``audio.dropout_prob=0.5``);
            ``data``, ``modality`` and ``init`` are the same as these keys, and a flag and an
            override that disagree are refused.
        resume: continue ``out`` exactly (its saved config is the base; :data:`RESUMABLE` keys may
            change, any other change is refused).
    Returns:
        The run directory.
    Raises:
        BadInputError / MissingFileError: invalid config, data or run directory (one message).
    """
    flat = [o for o in overrides if o.split("=", 1)[0].strip() in FLAT_OPTIM_KEYS]
    if flat:
        raise BadInputError(f"{', '.join(flat)}: the optimiser settings are under optim.* now (e.g. "
                            f"optim.{flat[0].strip()})")
    over = flag_overrides({"data": data, "modality": modality, "init": init}, overrides)
    cfg = load_run_config(ExpertStageConfig, config_path, over, out if resume else None, may_change=RESUMABLE,
                          upgrade=_upgrade)
    return train_expert(cfg, out, resume=resume)
