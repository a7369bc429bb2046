"""``avguide bench``: baseline vs AV-guided animators on the synthetic benchmark, end to end.

    data      OUT/data (generated) or --data DIR
    stage 1   OUT/experts/av        AV expert (the loss), camera from the template
              OUT/experts/reader    visual-only evaluation reader (separate run and seed,
                                    camera from each sequence's mean: it never sees templates)
              OUT/experts/visual    visual-only expert used as a loss (ablation)
              OUT/experts/untrained the AV expert at initialisation ("without stage 1" ablation)
              (a given or shipped ``expert`` / ``reader`` is used instead of training it; the
              ablation experts are trained when a step first needs them)
    stage 2   OUT/runs/<animator>/seed<k>/<condition>/    train -> predict test -> evaluate
              conditions: baseline, av_paper (l_av = paper_l_av), av_tuned (tuned_l_av); first
              animator only: av_visual_only, av_no_stage1, av_l_av=<x> for the sweep. With
              finetune_epochs > 0 the AV conditions start from the baseline run and a control,
              baseline_more, continues it with the vertex loss only
    floor     OUT/eval/static       every test sequence replaced by its template (+ the
                                    reader's ceiling on ground truth)
    first unit OUT/mechanism/<expert>, OUT/side_by_side/<name>.mp4 (first animator, first seed)
    report    OUT/report.json, OUT/report.md, OUT/plots.png

Every step writes ``done.json`` when it has finished, so a second run skips it (resumable); an
interrupted training run continues from its last checkpoint. Every result file holds the
resolved benchmark config and the avguide version.

**Light records and heavy runs.** A step's records (``done.json``, ``eval.json``, the run's
``metrics.jsonl``, the videos) are small; its ``run/`` checkpoints, ``pred/`` predictions and the
render cache are not. A benchmark longer than a machine's life keeps the records (the repository
keeps ``results/`` this way, its ``.gitignore`` leaving the rest out) and continues on another
machine: a finished step is skipped, and a run that a later step needs (a baseline to fine-tune,
CodeTalker's codebook, an ablation expert) but whose checkpoints are gone is trained again from
its seed.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import avguide
from avguide.bench.presets import PRESET_NAMES, BenchConfig, bench_preset
from avguide.bench.report import ARTICULATION
from avguide.pretrained import resolve
from avguide.config import config_to_dict, load_config
from avguide.errors import BadInputError
from avguide.io import load_json, load_jsonl, save_npy_atomic, write_json_atomic

AV_CONDITIONS = ("av_paper", "av_tuned")


@dataclasses.dataclass
class Condition:
    """One stage-2 training recipe: ``stage`` and the AV settings it overrides."""

    name: str
    stage: str
    av: dict[str, Any]
    from_baseline: bool = False     # start from the seed's baseline run (finetune_epochs > 0)


def conditions(cfg: BenchConfig, experts: dict[str, Path], first_animator: bool, seed_rank: int = 0,
               animator: str = "faceformer") -> list[Condition]:
    """The recipes trained for one animator and seed (see the module docstring).

    Args:
        animator: its name (``tuned_balance_on=auto`` balances CodeTalker on its parameters).
        first_animator: the ablations and the l_av sweep run for the first animator only,
        seed_rank: and for the first ``cfg.ablation_seeds`` seeds (0: all); this is the seed's
            position in ``cfg.seeds``.
    """
    av = {"expert": str(experts["av"]), "l_rlv": cfg.l_rlv, "expert_mode": cfg.expert_mode,
          "probe_every": cfg.probe_every}
    out = [Condition("baseline", "baseline", {})]
    if cfg.finetune_epochs:
        out.append(Condition("baseline_more", "baseline", {}))
    balance_on = cfg.tuned_balance_on
    if balance_on == "auto":
        balance_on = "parameters" if animator == "codetalker" else "vertices"
    tuned = {**av, "l_av": cfg.tuned_l_av, "balance": cfg.tuned_balance, "balance_on": balance_on}
    out += [Condition("av_paper", "av", {**av, "l_av": cfg.paper_l_av}), Condition("av_tuned", "av", tuned)]
    if first_animator and (cfg.ablation_seeds == 0 or seed_rank < cfg.ablation_seeds):
        if cfg.ablations:
            out += [Condition("av_visual_only", "av", {**tuned, "expert": str(experts["visual"])}),
                    Condition("av_no_stage1", "av", {**tuned, "expert": str(experts["untrained"])})]
        out += [Condition(f"av_l_av={x:g}", "av", {**av, "l_av": x}) for x in cfg.sweep_l_av]
        out += [Condition(name, "av", {**tuned, **variant}) for name, variant in cfg.audio_variants.items()]
    if cfg.finetune_epochs:
        out = [out[0]] + [dataclasses.replace(c, from_baseline=True) for c in out[1:]]
    return [c for c in out if c.name not in cfg.skip or c.name == "baseline"]


def _once(step_dir: Path, fn: Callable[[], dict], resolved: dict) -> dict:
    """Run ``fn`` unless ``step_dir/done.json`` says it has finished; record its result there."""
    done = step_dir / "done.json"
    if done.is_file():
        return _done(step_dir)["result"]
    t0 = time.perf_counter()
    result = fn()
    write_json_atomic(done, {"result": result, "seconds": round(time.perf_counter() - t0, 1),
                             "bench_config": resolved, "avguide_version": avguide.__version__})
    return result


def _done(step_dir: Path) -> dict:
    """A finished step's record ``done.json``, checked: {"result": dict, "seconds": number, ...}.

    Raises:
        BadInputError: unreadable, not JSON, or without those keys (the file named).
    """
    path = step_dir / "done.json"
    rec = load_json(path, "bench step record")
    if not isinstance(rec.get("result"), dict) or not isinstance(rec.get("seconds"), (int, float)):
        raise BadInputError(f"{path}: corrupt bench step record (needs 'result' and 'seconds'); delete it to run "
                            "the step again")
    return rec


def _step_seconds(step_dir: Path) -> float:
    """The time a finished step took when it ran (recorded in its ``done.json``)."""
    return float(_done(step_dir)["seconds"])


def _fresh_or_resume(run: Path) -> bool:
    """True to resume an interrupted run; removes a run that never reached its first checkpoint."""
    if (run / "last.json").is_file():
        return True
    if run.exists():
        shutil.rmtree(run)
    return False


def _dataset(cfg: BenchConfig, out: Path) -> Path:
    if cfg.data:
        return Path(cfg.data)
    from avguide.synth.generator import SynthConfig, generate

    root = out / "data"
    if not (root / "manifest.json").is_file():
        if root.exists():
            shutil.rmtree(root)
        generate(load_config(SynthConfig, base=dict(cfg.synth)), root)
    return root


def _stage1_overrides(cfg: BenchConfig) -> list[str]:
    """The preset's stage-1 recipe file, then its extra overrides."""
    from avguide import configs

    return [*(configs.overrides(cfg.expert_recipe) if cfg.expert_recipe else []), *cfg.expert_overrides]


def _train_expert(cfg: BenchConfig, data: Path, run: Path, modality: str, epochs: int, seed: int,
                  camera: str, cache: Path) -> None:
    from avguide.train.expert import run_expert_stage

    over = [*_stage1_overrides(cfg), f"size={cfg.expert_size}", f"optim.epochs={epochs}", f"seed={seed}",
            f"camera={camera}", f"cache_dir={cache}", f"device={cfg.device}"]
    run_expert_stage(str(data), run, modality=modality, overrides=over, resume=_fresh_or_resume(run))


def _untrained_expert(cfg: BenchConfig, data: Path, run: Path, seed: int, like: Path | None = None) -> None:
    """An AV expert at its initialisation, saved as a stage-1 run (the "without stage 1" ablation:
    there is no 2-D pretraining here, so skipping stage 1 leaves the expert untrained). ``like``:
    a trained expert whose architecture, tokeniser and video settings to copy (fresh weights)."""
    import torch

    from avguide.data.layouts import open_dataset
    from avguide.lipreader.lipvideo import assets_from_dataset, save_assets
    from avguide.lipreader.model import build_expert
    from avguide.lipreader.reader import expert_meta, make_tokenizer
    from avguide.train.expert import ExpertStageConfig
    from avguide.train.run import Run

    if run.exists():
        shutil.rmtree(run)
    ecfg = load_config(ExpertStageConfig, None, [f"data={data}", "modality=av", f"size={cfg.expert_size}",
                                                   f"seed={seed}", "camera=template", *_stage1_overrides(cfg)])
    tok_name, crop, camera = ecfg.tokenizer_name(), ecfg.crop_size(), ecfg.camera_rule()
    expert_cfg = ecfg.expert_config(make_tokenizer(tok_name).odim)
    if like is not None:
        from avguide.lipreader.reader import load_trained_expert

        trained = load_trained_expert(like)
        expert_cfg, tok_name, crop, camera = trained.model.cfg, str(trained.meta["tokenizer"]), trained.crop, \
            trained.camera
    torch.manual_seed(seed)
    model = build_expert(expert_cfg)
    with Run(run, config_to_dict(ecfg)) as r:
        save_assets(run / "render_assets.npz", assets_from_dataset(open_dataset(data)))
        r.save(model, {}, epoch=0, step=0, metrics={}, score=0.0, seconds=0.0,
               extra=expert_meta(expert_cfg, tok_name, crop, camera))


def _train_animator(cfg: BenchConfig, data: Path, run: Path, animator: str, seed: int, stage: str,
                    av: dict, vq_run: Path | None, init: Path | None = None) -> None:
    from avguide.train.animator import AnimatorTrainConfig, train_animator

    epochs = cfg.vq_epochs if stage == "vq" else (cfg.finetune_epochs if init else cfg.epochs)
    base = {"data": str(data), "animator": animator, "stage": stage, "preset": cfg.animator_preset,
            "model": dict(cfg.model), "seed": seed, "device": cfg.device, "max_sequences": cfg.max_sequences,
            "optim": {"epochs": epochs, "batch_size": cfg.batch_size,
                      "lr": (cfg.finetune_lr or cfg.lr) if init else cfg.lr},
            "vq_run": str(vq_run) if vq_run else "", "av": dict(av), "init": str(init) if init else ""}
    train_animator(load_config(AnimatorTrainConfig, base=base), run, resume=_fresh_or_resume(run))


def _evaluate(pred_dir: Path, data: Path, reader, out_json: Path, resolved: dict, extra: dict,
              read_ground_truth: bool = False) -> dict:
    from avguide.metrics.evaluate import EvaluateConfig, evaluate_dataset
    from avguide.metrics.report import write_report

    ecfg = EvaluateConfig(split="test", read_ground_truth=read_ground_truth)
    report = evaluate_dataset(pred_dir, data, ecfg, reader=reader)
    write_report(out_json, report, ecfg, extra_config={"bench": resolved, **extra})
    return summarize(report)


def summarize(report: dict) -> dict:
    """The numbers the benchmark tabulates from an :func:`avguide.metrics.evaluate.evaluate` report:
    lve, mve (mean over frames), fdd (signed mean), cer, wer, ver (corpus rates), the reader's
    ceiling on ground truth (``gt_cer`` ...) when present, and the articulation metrics (with the
    ground truth's own bilabial closure, ``bilabial_closure_gt``) where the data has timed phones."""
    s = report["summary"]
    row = {"lve": s["lve"]["mean_over_frames"], "mve": s["mve"]["mean_over_frames"], "fdd": s["fdd"]["mean"]}
    for m in ("cer", "wer", "ver"):
        if m in s:
            row[m] = s[m]["corpus"]
        if report.get("ceiling") and m in report["ceiling"]:
            row[f"gt_{m}"] = report["ceiling"][m]["corpus"]
    if s.get("articulation"):
        row |= {k: s["articulation"][k] for k in (*ARTICULATION, "bilabial_closure_gt")}
    return row


def _static_predictions(data: Path, out_dir: Path) -> None:
    """Every test recording's template repeated over its frames (the floor row)."""
    from avguide.data.layouts import open_dataset
    from avguide.data.samples import load_sample

    index = open_dataset(data)
    for ref in index.split("test"):
        s = load_sample(index, ref)
        static = np.repeat(s.template[None], s.vertices.shape[0], axis=0)  # (T, V, 3)
        save_npy_atomic(out_dir / f"{ref.name}.npy", static.reshape(static.shape[0], -1).astype(np.float32))


def resolve_bench_config(preset: str, overrides: list[str] | tuple[str, ...] = (),
                         config_path: str | Path | None = None) -> BenchConfig:
    """The preset's numbers, then an optional YAML file, then ``key=value`` overrides.

    Raises:
        BadInputError: unknown preset or invalid values (all listed).
    """
    if preset not in PRESET_NAMES:
        raise BadInputError(f"--preset {preset!r}: allowed: {', '.join(PRESET_NAMES)}")
    return load_config(BenchConfig, config_path, list(overrides), base=bench_preset(preset))


def run_bench(preset: str, out: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
              config_path: str | Path | None = None, shard: tuple[int, int] | None = None,
              report_only: bool = False) -> dict | None:
    """Run (or continue) the benchmark and write its report.

    Args:
        preset: a file of ``avguide/configs/bench/`` (:func:`avguide.bench.presets.bench_preset`).
        out: output directory (created; an existing one is continued, finished steps skipped).
        overrides: ``key=value`` settings over the preset (e.g. ``seeds=[0,1]``,
            ``animators=[faceformer]``, ``data=DIR``).
        config_path: optional YAML file of :class:`BenchConfig` fields.
        shard: ``(k, n)``: this process runs only the k-th of n interleaved shares of the
            (animator, seed) units (:func:`shard_units`), so that n processes of one thread each
            share a machine's cores on one ``out``; shard 1 also runs the shared steps (the
            experts it trains, the floor, and with the first unit the mechanism and the video)
            and the others wait for the experts. No
            report: run once more without ``shard`` when all have finished (it skips every finished
            step and writes the report). None: everything, then the report.
        report_only: run nothing; report the steps finished so far, list the others as pending
            and mark the verdict provisional (a benchmark that spans several machines or days).
    Returns:
        The report dict written to ``OUT/report.json`` (None for a shard).
    Raises:
        BadInputError / MissingFileError: invalid settings or data; TrainingDivergedError.
    """
    from avguide.bench.figures import plot_conditions
    from avguide.bench.report import build_report, write_bench_report
    from avguide.lipreader.reader import load_reader

    cfg = resolve_bench_config(preset, overrides, config_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    resolved = config_to_dict(cfg)
    saved = out / "bench_config.json"
    if saved.is_file() and load_json(saved, "bench config record").get("config") != resolved:
        raise BadInputError(f"--out {out}: holds a benchmark with another config ({saved}); use a new --out")
    write_json_atomic(saved, {"config": resolved, "avguide_version": avguide.__version__})
    timings: dict[str, float] = {}
    first = shard is None or shard[0] == 1  # runs the shared steps; the other shards wait for them

    pending: list[str] = []

    def timed(name: str, step_dir: Path, fn: Callable[[], dict | None], quiet: bool = False) -> dict | None:
        if report_only and not (step_dir / "done.json").is_file():
            pending.append(name)
            return None
        if not first and name in SHARED_STEPS:
            _wait_until(step_dir / "done.json")
        skipped = (step_dir / "done.json").is_file()
        res = _once(step_dir, lambda: fn() or {}, resolved)
        seconds = _step_seconds(step_dir)  # also for a step finished by an earlier call
        if not quiet:
            timings[name] = seconds
        print(f"[bench] {name}: {seconds:.1f} s{' (finished earlier)' if skipped else ''}", flush=True)
        return res

    def trained(name: str, step_dir: Path, run: Path, fn: Callable[[], None], quiet: bool = False) -> Path:
        """A training run later steps need: trained once, and trained again when only its light
        records survived (a results folder kept in git without its ``run/`` checkpoints)."""
        if (step_dir / "done.json").is_file() and not (run / "last.json").is_file():
            print(f"[bench] {name}: its records are here but not its checkpoints ({run}); training it again",
                  flush=True)
            (step_dir / "done.json").unlink()
        timed(name, step_dir, fn, quiet)
        return run

    if not first and not cfg.data:
        _wait_until(out / "data" / "manifest.json")
    data = _dataset(cfg, out)
    cache = out / "render_cache"
    base_seed = cfg.seeds[0]
    experts: dict[str, Path] = {}
    makers: dict[str, Callable[[], None]] = {}  # the experts this benchmark trains, by name
    if cfg.expert:  # trained elsewhere or shipped: used as it is
        experts["av"] = resolve(cfg.expert)
    else:
        makers["av"] = lambda: _train_expert(cfg, data, experts["av"], "av", cfg.expert_epochs, base_seed,
                                             "template", cache)
    if cfg.reader:
        experts["reader"] = resolve(cfg.reader)
    else:
        makers["reader"] = lambda: _train_expert(cfg, data, experts["reader"], "video", cfg.reader_epochs,
                                                 base_seed + 1000, "sequence_mean", cache)
    if cfg.ablations:
        makers["visual"] = lambda: _train_expert(cfg, data, experts["visual"], "video", cfg.expert_epochs,
                                                 base_seed + 2000, "template", cache)
        makers["untrained"] = lambda: _untrained_expert(cfg, data, experts["untrained"], base_seed,
                                                        experts["av"] if cfg.expert else None)
    experts |= {name: out / "experts" / name / "run" for name in makers}

    def expert(name: str) -> Path:
        """An expert's run, trained first if this benchmark trains it and it is not on disk."""
        if name in makers:
            trained(f"expert_{name}", out / "experts" / name, experts[name], makers[name])
        return experts[name]

    for name in ("av", "reader"):
        if not report_only:
            expert(name)  # the ablation experts are trained when a step first needs them
    readers: list = []  # loaded when a step first evaluates

    def reader():
        if not readers:
            readers.append(load_reader(experts["reader"]))
        return readers[0]

    extra = {"reader": str(experts["reader"])}

    static_dir = out / "eval" / "static"

    def floor() -> dict:
        _static_predictions(data, static_dir / "pred")
        return _evaluate(static_dir / "pred", data, reader(), static_dir / "eval.json", resolved, extra,
                         read_ground_truth=True)

    rows = {"static": timed("static", static_dir, floor)} if first else {}
    results: list[dict] = []
    mechanism, video = {}, []
    for ai, animator, rank, seed in shard_units(cfg, shard):
        root = out / "runs" / animator / f"seed{seed}"
        conds = {c.name: c for c in conditions(cfg, experts, ai == 0, rank, animator)}
        vq_dir = root / "vq"

        def vq_run(animator=animator, seed=seed, vq_dir=vq_dir) -> Path | None:
            if animator != "codetalker":
                return None
            return trained(f"{animator}/seed{seed}/vq", vq_dir / "train", vq_dir / "run",
                           lambda: _train_animator(cfg, data, vq_dir / "run", animator, seed, "vq", {}, None))

        def train_run(cond: Condition, root=root, animator=animator, seed=seed, conds=conds, vq_run=vq_run) -> Path:
            """The condition's trained run (trained again if only its records survived)."""
            init = train_run(conds["baseline"]) if cond.from_baseline else None
            for name, path in experts.items():
                if cond.av.get("expert") == str(path):
                    expert(name)
            vq = vq_run()
            cdir = root / cond.name
            return trained(f"{animator}/seed{seed}/{cond.name}/train", cdir / "train", cdir / "run",
                           lambda: _train_animator(cfg, data, cdir / "run", animator, seed, cond.stage, cond.av,
                                                   vq, init), quiet=True)

        def predictions(cond: Condition, root=root, train_run=train_run) -> Path:
            """The condition's test predictions (predicted again if missing)."""
            from avguide.animate import predict_split

            pred = root / cond.name / "pred"
            if not pred.is_dir():
                run, partial = train_run(cond), pred.with_name("pred.partial")
                if partial.exists():
                    shutil.rmtree(partial)
                predict_split(run, data, "test", partial)
                pred.with_name("pred.partial").rename(pred)
            return pred

        for cond in conds.values():
            cdir = root / cond.name

            def step(cond=cond, cdir=cdir) -> dict:
                run = train_run(cond)
                shutil.copyfile(run / "metrics.jsonl", cdir / "metrics.jsonl")  # kept beside the light records
                if (cdir / "pred").exists():
                    shutil.rmtree(cdir / "pred")
                return _evaluate(predictions(cond), data, reader(), cdir / "eval.json", resolved,
                                 {**extra, "run": str(cdir / "run"), "condition": cond.name})

            res = timed(f"{animator}/seed{seed}/{cond.name}", cdir, step)
            if res is not None:
                results.append({"animator": animator, "seed": seed, "condition": cond.name, **res,
                                **_gradient_norms(cdir)})
        if animator == "codetalker" and (vq_dir / "train" / "done.json").is_file():
            timings[f"{animator}/seed{seed}/vq"] = _step_seconds(vq_dir / "train")
        if ai == 0 and rank == 0:  # the first unit: the mechanism and the video, while its runs are on disk
            if cfg.mechanism:
                from avguide.bench.mechanism import lip_dependence

                for name in ("av", "visual"):
                    if name in experts:
                        res = timed(f"mechanism_{name}", out / "mechanism" / name,
                                    lambda name=name: lip_dependence(expert(name), data, "test", seed=base_seed,
                                                                     device=cfg.device))
                        if res is not None:
                            mechanism[name] = res
            if cfg.video_sentences:
                from avguide.bench.figures import side_by_side_video

                video = (timed("side_by_side", out / "side_by_side", lambda: {"videos": side_by_side_video(
                    data, predictions(conds["baseline"]), predictions(conds["av_tuned"]), out / "side_by_side",
                    cfg.video_sentences, cfg.video_size)}) or {}).get("videos", [])
    for name in makers:  # the experts' training times, also where no step needed them this time
        if (out / "experts" / name / "done.json").is_file():
            timings[f"expert_{name}"] = _step_seconds(out / "experts" / name)
    if shard is not None:
        print(f"[bench] shard {shard[0]}/{shard[1]} finished; once every shard has, run the same command "
              "without --shard to write the report", flush=True)
        return None
    report = build_report(resolved, results, rows.get("static") or {}, timings,
                          control="baseline_more" if cfg.finetune_epochs else "baseline", mechanism=mechanism,
                          pending=pending)
    report["figures"] = {"plots": plot_conditions(report, out / "plots.png"), **({"video": video} if video else {})}
    write_bench_report(out, report)
    return report


SHARED_STEPS = ("expert_av", "expert_reader", "expert_visual", "expert_untrained")
"""Steps every shard needs: shard 1 runs them, the others wait for their ``done.json``."""


def shard_units(cfg: BenchConfig, shard: tuple[int, int] | None) -> list[tuple[int, str, int, int]]:
    """The (animator index, animator, seed rank, seed) units a shard runs, in the benchmark's order.

    Args:
        shard: ``(k, n)`` with 1 <= k <= n: every n-th unit from the k-th; None: all of them.
    Raises:
        BadInputError: k outside 1..n.
    """
    units = [(ai, a, rank, seed) for ai, a in enumerate(cfg.animators) for rank, seed in enumerate(cfg.seeds)]
    if shard is None:
        return units
    k, n = shard
    if not 1 <= k <= n:
        raise BadInputError(f"--shard {k}/{n}: needs 1 <= k <= n")
    return units[k - 1::n]


def _wait_until(path: Path, poll_s: float = 30.0) -> None:
    """Block until ``path`` exists (another shard's step finishing), saying so once."""
    if not path.exists():
        print(f"[bench] waiting for {path} (another shard)", flush=True)
    while not path.exists():
        time.sleep(poll_s)


def _gradient_norms(step_dir: Path) -> dict:
    """The first and last epoch's mean gradient probes of a condition (norms, and where the AV
    gradient points), from the copy of its run's ``metrics.jsonl`` in its step folder (empty for
    runs without AV loss)."""
    path = step_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    lines = load_jsonl(path, "run metrics", partial_tail="drop")
    out = {}
    for k in ("train_gnorm_av", "train_gnorm_av_lips", "train_gnorm_mse", "train_gnorm_av_unit", "train_cos_av_truth"):
        probed = [ln[k] for ln in lines if k in ln]  # epochs in which a probe ran
        if probed:
            out[f"{k[len('train_'):]}_first"], out[f"{k[len('train_'):]}_last"] = probed[0], probed[-1]
    return out
