"""avguide bench: report writer (hand-computed statistics and claim), config validation, and the
``ci`` preset end to end (FaceFormer only here; both animators and ablations in the slow test)."""

import json
from pathlib import Path

import pytest

from avguide.bench import resolve_bench_config, run_bench
from avguide.bench.runner import conditions, shard_units
from avguide.bench.report import (aggregate, build_report, check_claim, format_markdown, mean_std, paired_deltas,
                                  write_bench_report)
from avguide.errors import BadInputError


def _row(condition, seed, cer, ver, lve, **kw):
    return {"animator": "faceformer", "seed": seed, "condition": condition, "cer": cer, "ver": ver, "lve": lve,
            "wer": 2 * cer, "mve": 1e-3, "fdd": 0.0, **kw}


def test_mean_std_by_hand():
    assert mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 3}  # sample std: sqrt(2/2)
    assert mean_std([5.0]) == {"mean": 5.0, "std": 0.0, "n": 1}
    assert mean_std([]) == {"mean": None, "std": None, "n": 0}


def test_claim_and_report_files(tmp_path):
    rows = [_row("baseline", s, c, v, 2e-5) for s, c, v in ((0, 0.50, 0.40), (1, 0.52, 0.42), (2, 0.48, 0.38))]
    rows += [_row("av_tuned", s, c, v, 2e-5, gnorm_av_first=1e-6, gnorm_mse_first=2e-6, gnorm_av_last=3e-6,
                  gnorm_mse_last=1e-6, gnorm_av_lips_last=1e-7)
             for s, c, v in ((0, 0.40, 0.30), (1, 0.41, 0.31), (2, 0.42, 0.32))]
    table = aggregate(rows)
    base = table["faceformer"]["baseline"]
    assert base["cer"]["mean"] == pytest.approx(0.50) and base["cer"]["std"] == pytest.approx(0.02)
    assert base["seeds"] == [0, 1, 2] and "gnorm_av_last" not in base
    claim = check_claim(table)["faceformer"]
    # 0.41 + 0.01 < 0.50 - 0.02 and 0.31 + 0.01 < 0.40 - 0.02; LVE equal -> no worse
    assert claim["holds"] and claim["cer_delta"] == pytest.approx(-0.09) and claim["lve_no_worse"]
    worse = [dict(r, lve=3e-5) if r["condition"] == "av_tuned" else r for r in rows]
    assert not check_claim(aggregate(worse))["faceformer"]["holds"]
    overlap = [dict(r, cer=r["cer"] + 0.07) if r["condition"] == "av_tuned" else r for r in rows]
    assert not check_claim(aggregate(overlap))["faceformer"]["cer_beyond_spread"]  # 0.49 + 0.01 > 0.48

    static = {"lve": 8e-5, "mve": 2e-3, "fdd": 1e-6, "cer": 0.9, "wer": 1.0, "ver": 0.8,
              "gt_cer": 0.1, "gt_wer": 0.3, "gt_ver": 0.05}
    report = build_report({"preset": "ci", "seeds": [0, 1, 2]}, rows, static, {"x": 1.0})
    assert report["ground_truth"] == {"lve": 0.0, "fdd": 0.0, "mve": 0.0, "cer": 0.1, "wer": 0.3, "ver": 0.05}
    assert "gt_cer" not in report["static"] and report["avguide_version"]
    write_bench_report(tmp_path, report)
    md = (tmp_path / "report.md").read_text()
    assert "| faceformer | baseline | 3 | 2.000 ± 0.000 | 0.000 ± 0.000 | 1.000 ± 0.000 | 50.000 ± 2.000 | 100.000 ± 4.000 | 40.000 ± 2.000 |" in md
    assert "| - | ground truth (reader ceiling) | - | 0.000 | 0.000 | 0.000 | 10.000 | 30.000 | 5.000 |" in md
    assert "**holds**" in md and "| faceformer | av_tuned | 1e-06 / 3e-06 | 2e-06 / 1e-06 | 1e-07 |" in md
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["config"]["preset"] == "ci" and saved["claim"]["faceformer"]["holds"] is True
    assert format_markdown(saved) == md


def test_paired_deltas_by_hand():
    # seeds far apart (0.50, 0.60, 0.70), av_tuned 0.01 lower in each: the unpaired spread hides it
    rows = [_row("baseline", s, c, c - 0.1, 2e-5) for s, c in ((0, 0.50), (1, 0.60), (2, 0.70))]
    rows += [_row("av_tuned", s, c, c - 0.1, 2e-5 + s * 1e-6) for s, c in ((0, 0.49), (1, 0.59), (2, 0.69))]
    rows += [_row("av_tuned", 3, 0.1, 0.1, 1e-5)]  # no control for seed 3: not paired
    assert not check_claim(aggregate(rows))["faceformer"]["cer_beyond_spread"]
    p = paired_deltas(rows)["faceformer"]
    assert p["seeds"] == [0, 1, 2]
    assert p["cer"]["mean"] == pytest.approx(-0.01) and p["cer"]["std"] == pytest.approx(0.0, abs=1e-12)
    assert p["improved"]["cer"] == 3 and p["improved"]["ver"] == 3
    # LVE differences 0, 1e-6, 2e-6: mean 1e-6, sample std 1e-6, lower in none
    assert p["lve"]["mean"] == pytest.approx(1e-6) and p["lve"]["std"] == pytest.approx(1e-6)
    assert p["improved"]["lve"] == 0
    md = format_markdown(build_report({"preset": "ci", "seeds": [0, 1, 2]}, rows, {"lve": 8e-5}, {"x": 1.0}))
    assert ("- faceformer, seeds [0, 1, 2]: ΔCER -1.000 ± 0.000 pts (lower in 3/3), ΔVER -1.000 ± 0.000 pts "
            "(lower in 3/3), ΔLVE 0.100 ± 0.100 x1e-5 (lower in 0/3)") in md
    assert paired_deltas([r for r in rows if r["condition"] == "baseline"]) == {}


def test_config_errors_are_listed():
    with pytest.raises(BadInputError, match="allowed: ci, cpu, default, full, realism"):
        resolve_bench_config("huge")
    with pytest.raises(BadInputError) as e:
        resolve_bench_config("ci", ["animators=[pix2pix]", "seeds=[1,1]"])
    assert "animators" in str(e.value) and "seeds" in str(e.value)
    cfg = resolve_bench_config("cpu", ["seeds=[4]"])
    assert cfg.seeds == [4] and cfg.animator_preset == "cpu" and cfg.epochs == 30


def test_ablations_and_sweep_run_for_the_first_seeds_only():
    cfg = resolve_bench_config("cpu")  # ablation_seeds=1, sweep [1e-9, 1e-8], finetune_epochs=2
    experts = {k: Path(k) for k in ("av", "visual", "untrained")}
    main = ["baseline", "baseline_more", "av_paper", "av_tuned"]
    extra = ["av_visual_only", "av_no_stage1", "av_l_av=1e-09", "av_l_av=1e-08"]
    assert [c.name for c in conditions(cfg, experts, True, 0)] == main + extra
    assert [c.name for c in conditions(cfg, experts, True, 1)] == main
    assert [c.name for c in conditions(cfg, experts, False, 0)] == main
    by_name = {c.name: c for c in conditions(cfg, experts, True, 0)}
    assert by_name["av_tuned"].av["balance"] == 0.2 and by_name["av_tuned"].av["balance_on"] == "vertices"
    assert "balance" not in by_name["av_paper"].av and by_name["av_paper"].av["l_av"] == 1e-7
    params = resolve_bench_config("cpu", ["tuned_balance_on=parameters"])
    assert conditions(params, experts, False, 0)[3].av["balance_on"] == "parameters"
    auto = resolve_bench_config("cpu", ["tuned_balance_on=auto"])
    assert conditions(auto, experts, False, 0, "codetalker")[3].av["balance_on"] == "parameters"
    assert conditions(auto, experts, True, 0, "faceformer")[3].av["balance_on"] == "vertices"
    assert resolve_bench_config("default").tuned_balance_on == "auto"
    every = resolve_bench_config("cpu", ["ablation_seeds=0"])
    assert [c.name for c in conditions(every, experts, True, 2)] == main + extra
    # every continued condition starts from the seed's baseline, which trains from scratch
    assert [c.from_baseline for c in conditions(cfg, experts, True, 0)] == [False] + [True] * 7
    # the stage-2 audio variants: ablations on top of the tuned condition
    variants = resolve_bench_config("cpu", ["audio_variants={av_half: {audio_drop: 0.5}}"])
    half = conditions(variants, experts, True, 0)[-1]
    assert half.name == "av_half" and half.av == {**by_name["av_tuned"].av, "audio_drop": 0.5}
    assert "av_half" not in [c.name for c in conditions(variants, experts, False, 0)]
    with pytest.raises(BadInputError, match="audio_variants.half"):
        resolve_bench_config("cpu", ["audio_variants={half: {audio_drp: 0.5}}"])


def test_articulation_rows_and_mechanism_in_the_report(tmp_path):
    rows = [_row("baseline", s, 0.5, 0.4, 2e-5, lip_motion_ratio=r, opening_corr=0.5, bilabial_closure=0.2,
                 open_vowel_aperture=0.6) for s, r in ((0, 0.4), (1, 0.6))]
    static = {"lve": 8e-5, "mve": 2e-3, "fdd": 1e-6, "cer": 0.9, "wer": 1.0, "ver": 0.8, "lip_motion_ratio": 0.0,
              "bilabial_closure": 0.0, "bilabial_closure_gt": 0.9, "open_vowel_aperture": 0.0}
    mech = {"av": {"expert": "expert-av", "modality": "av", "split": "test", "n": 2,
                   "rows": {"true/clean": {"cer": 0.03, "wer": 0.1, "ctc": 1.5, "ce": 2.0, "grad_lips": 0.25,
                                           "grad_mesh": 0.5}}}}
    report = build_report({"preset": "ci", "seeds": [0, 1]}, rows, static, {}, mechanism=mech)
    assert report["ground_truth"]["bilabial_closure"] == 0.9 and "bilabial_closure_gt" not in report["static"]
    md = format_markdown(report)
    # ratios 0.4 and 0.6: mean 0.5, sample std 0.141
    assert "| faceformer | baseline | 2 | 0.500 ± 0.141 | 0.500 ± 0.000 | 0.200 ± 0.000 | 0.600 ± 0.000 |" in md
    assert "| - | ground truth (reader ceiling) | - | 1.000 | 1.000 | 0.900 | 1.000 |" in md
    assert "| - | static face (floor) | - | 0.000 | - | 0.000 | 0.000 |" in md
    assert "| true/clean | 3.0 | 10.0 | 1.5 | 2 | 0.25 | 0.5 |" in md


def _check_outputs(out, conditions):
    report = json.loads((out / "report.json").read_text())
    table = report["table"]["faceformer"]
    assert report["order"][0] == ["faceformer", conditions]
    for name in conditions:
        for m in ("lve", "fdd", "mve", "cer", "wer", "ver"):
            assert table[name][m]["n"] == 1
        ev = json.loads((out / "runs" / "faceformer" / "seed0" / name / "eval.json").read_text())
        assert ev["config"]["bench"]["preset"] == "ci" and ev["avguide_version"]
    for name in conditions:
        if name.startswith("av_"):
            assert table[name]["gnorm_av_last"]["mean"] > 0 and table[name]["gnorm_av_lips_last"]["mean"] > 0
    # the paper's weight is 1e4 x smaller than the tuned one: the gradient norms say so exactly
    ratio = table["av_tuned"]["gnorm_av_first"]["mean"] / table["av_paper"]["gnorm_av_first"]["mean"]
    assert ratio == pytest.approx(1e-4 / 1e-7, rel=1e-3)
    assert report["static"]["lve"] > 0 and 0 <= report["ground_truth"]["cer"]
    assert (out / "plots.png").stat().st_size > 1000
    return report


def test_ci_preset_faceformer_plumbing_and_resume(tmp_path):
    out = tmp_path / "bench"
    over = ["animators=[faceformer]", "ablations=false", "sweep_l_av=[]", "video_sentences=0"]
    first = run_bench("ci", out, over)
    _check_outputs(out, ["baseline", "av_paper", "av_tuned"])
    assert set(first["mechanism"]["av"]["rows"]) == {f"{v}/{a}" for v in ("true", "static", "other")
                                                     for a in ("clean", "dropped")}
    md = (out / "report.md").read_text()
    assert "## The mechanism" in md and "## Articulation" in md
    assert 0 < first["table"]["faceformer"]["baseline"]["lip_motion_ratio"]["mean"]
    last = out / "runs" / "faceformer" / "seed0" / "av_tuned" / "run" / "last.json"
    stamp = last.stat().st_mtime_ns
    again = run_bench("ci", out, over)  # every step done: nothing retrained, same numbers
    assert again["table"] == first["table"] and last.stat().st_mtime_ns == stamp
    assert again["timings_s"] == first["timings_s"]  # the times recorded when the steps ran
    with pytest.raises(BadInputError, match="another config"):
        run_bench("ci", out, [*over, "epochs=3"])


def test_shards_partition_the_units():
    cfg = resolve_bench_config("ci", ["seeds=[0,1,2]"])  # 2 animators x 3 seeds
    every = shard_units(cfg, None)
    assert [(a, s) for _, a, _, s in every] == [(a, s) for a in ("faceformer", "codetalker") for s in (0, 1, 2)]
    parts = [shard_units(cfg, (k, 2)) for k in (1, 2)]
    assert sorted(parts[0] + parts[1]) == sorted(every) and not set(parts[0]) & set(parts[1])
    assert parts[0][0] == every[0]  # shard 1 starts with the first unit (the ablations)
    with pytest.raises(BadInputError, match="3/2"):
        shard_units(cfg, (3, 2))


def test_two_shards_then_the_report(tmp_path):
    """Shard 1 runs the shared steps and seed 0, shard 2 seed 1; the run without a shard retrains
    nothing and reports both seeds."""
    out = tmp_path / "bench"
    over = ["animators=[faceformer]", "seeds=[0,1]", "ablations=false", "sweep_l_av=[]", "video_sentences=0",
            "mechanism=false"]
    assert run_bench("ci", out, over, shard=(1, 2)) is None
    assert not (out / "report.json").exists() and (out / "eval" / "static" / "done.json").is_file()
    assert not (out / "runs" / "faceformer" / "seed1").exists()
    run_bench("ci", out, over, shard=(2, 2))
    last = out / "runs" / "faceformer" / "seed1" / "av_tuned" / "run" / "last.json"
    stamp = last.stat().st_mtime_ns
    report = run_bench("ci", out, over)
    assert last.stat().st_mtime_ns == stamp
    assert report["table"]["faceformer"]["av_tuned"]["lve"]["n"] == 2


@pytest.mark.slow
def test_ci_preset_full(tmp_path):
    """The whole ``ci`` preset: both animators, ablations, the l_av sweep, the video."""
    out = tmp_path / "bench"
    report = run_bench("ci", out)
    _check_outputs(out, ["baseline", "av_paper", "av_tuned", "av_visual_only", "av_no_stage1", "av_l_av=0.001"])
    assert report["order"][1] == ["codetalker", ["baseline", "av_paper", "av_tuned"]]
    videos = report["figures"]["video"]
    assert videos and all((out / "side_by_side").joinpath(v.split("/")[-1]).stat().st_size > 1000 for v in videos)
    assert (out / "report.md").read_text().count("| codetalker |") >= 3


def test_continues_from_the_light_records_alone(tmp_path):
    """A results folder kept in git without its checkpoints and predictions (the ``.gitignore``
    of ``results/``): finished steps are skipped, and a pending fine-tune trains its baseline again
    from its seed, which reproduces the baseline that was evaluated."""
    import shutil

    from avguide.io import load_jsonl

    out = tmp_path / "bench"
    over = ["animators=[faceformer]", "ablations=false", "sweep_l_av=[]", "mechanism=false", "finetune_epochs=1",
            "video_sentences=1"]
    first = run_bench("ci", out, over)
    seed0 = out / "runs" / "faceformer" / "seed0"
    def losses(path):  # the run's logged losses, without its timings
        return [{k: v for k, v in line.items() if k != "seconds"} for line in load_jsonl(path, "metrics")]

    base_metrics = losses(seed0 / "baseline" / "metrics.jsonl")
    for heavy in [*out.glob("**/run"), *out.glob("**/pred")]:
        shutil.rmtree(heavy)
    (seed0 / "av_tuned" / "done.json").unlink()
    again = run_bench("ci", out, over)
    assert (seed0 / "baseline" / "run" / "last.json").is_file()  # trained again for the fine-tune
    assert losses(seed0 / "baseline" / "run" / "metrics.jsonl") == base_metrics
    assert not (seed0 / "av_paper" / "run").exists()  # finished: not trained again
    assert again["table"] == first["table"]
    assert again["figures"]["video"] == first["figures"]["video"]
    assert again["pending"] == [] and "Provisional" not in (out / "report.md").read_text()


def test_report_only_runs_nothing_and_lists_what_is_pending(tmp_path):
    """Seed 0 finished, seed 1 not started: the report holds seed 0's rows, names seed 1's steps as
    pending, says the verdict is provisional, and trains nothing."""
    out = tmp_path / "bench"
    over = ["animators=[faceformer]", "seeds=[0,1]", "ablations=false", "sweep_l_av=[]", "video_sentences=0",
            "mechanism=false"]
    run_bench("ci", out, over, shard=(1, 2))
    report = run_bench("ci", out, over, report_only=True)
    assert not (out / "runs" / "faceformer" / "seed1").exists()
    assert report["pending"] == [f"faceformer/seed1/{c}" for c in ("baseline", "av_paper", "av_tuned")]
    assert report["table"]["faceformer"]["av_tuned"]["lve"]["n"] == 1
    md = (out / "report.md").read_text()
    assert "**Provisional**: 3 steps" in md and "faceformer/seed1/av_tuned" in md
