"""Animator training (stages baseline and vq): checkpoints, exact resume, NaN guard, CLI, DDP on gloo."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avguide.cli import main
from avguide.errors import BadInputError, TrainingDivergedError
from avguide.checkpoint import load_checkpoint
from avguide.train.animator import load_train_config, train_animator

TINY = ["preset=tiny", "optim.batch_size=2", "optim.lr=1e-3", "seed=1"]


def _cfg(data, *extra):
    return load_train_config(None, [f"data={data}", *TINY, *extra], None)


def test_resume_continues_exactly(toy_dataset, tmp_path):
    train_animator(_cfg(toy_dataset, "optim.epochs=3"), tmp_path / "full")
    train_animator(_cfg(toy_dataset, "optim.epochs=1"), tmp_path / "part")
    cfg = load_train_config(None, ["optim.epochs=3"], str(tmp_path / "part"))
    train_animator(cfg, tmp_path / "part", resume=True)
    a, meta_a, _ = load_checkpoint(tmp_path / "full")
    b, meta_b, _ = load_checkpoint(tmp_path / "part")
    assert meta_a["epoch"] == meta_b["epoch"] == 3
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert meta_a["config"]["model"] == meta_b["config"]["model"]
    lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1, 2, 3]


def test_training_reduces_loss_and_saves_config(toy_dataset, tmp_path):
    train_animator(_cfg(toy_dataset, "optim.epochs=6", "optim.lr=3e-3"), tmp_path / "r")
    rows = [json.loads(ln) for ln in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_mse"] < 0.5 * rows[0]["train_mse"]
    _, meta, ckpt = load_checkpoint(tmp_path / "r")
    assert meta["config"]["model"]["kind"] == "faceformer" and meta["config"]["optim"]["epochs"] == 6
    assert (ckpt / "model.safetensors").is_file() and (tmp_path / "r" / "assets.safetensors").is_file()


def test_nan_loss_stops_with_message(toy_dataset, tmp_path):
    with pytest.raises(TrainingDivergedError, match="non-finite loss.*epoch 1, step 1"):
        train_animator(_cfg(toy_dataset, "optim.epochs=1", "loss_weights={mse: .nan}"), tmp_path / "nan")
    assert not (tmp_path / "nan" / "last.json").exists()


def test_cli_errors_are_one_line(toy_dataset, tmp_path, capsys):
    assert main(["train", "--stage", "baseline", "--data", str(toy_dataset), "--out", str(tmp_path / "x"),
                 "optim.lr=-1", "nope=1"]) == 2
    err = capsys.readouterr().err
    assert "optim.lr: must be > 0" in err or "nope: unknown key" in err
    assert "Traceback" not in err
    assert main(["train", "--stage", "baseline", "--animator", "codetalker", "--data", str(toy_dataset),
                 "--out", str(tmp_path / "y")]) == 2
    assert "vq_run" in capsys.readouterr().err


def test_codetalker_two_stages(toy_dataset, tmp_path):
    vq = _cfg(toy_dataset, "animator=codetalker", "stage=vq", "optim.epochs=1")
    train_animator(vq, tmp_path / "vq")
    cfg = _cfg(toy_dataset, "animator=codetalker", f"vq_run={tmp_path / 'vq'}", "optim.epochs=1")
    train_animator(cfg, tmp_path / "ct")
    a, _, _ = load_checkpoint(tmp_path / "vq")
    b, meta, _ = load_checkpoint(tmp_path / "ct")
    # stage 1 normalises motion by the training offsets' RMS, measured here independently
    import numpy as np
    from avguide.data.layouts import open_dataset
    from avguide.data.samples import load_sample
    idx = open_dataset(toy_dataset)
    off = np.concatenate([(load_sample(idx, r).vertices - load_sample(idx, r).template).ravel()
                          for r in idx.split("train")])
    assert float(a["vqvae.motion_scale"]) == pytest.approx(float(np.sqrt(np.mean(off.astype(np.float64) ** 2))), rel=1e-4)
    for k in a:  # the VQ-VAE is frozen in stage 2
        if k.startswith("vqvae."):
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert "train_mse" in meta

    # tools/codebook_ceiling.py: the test split through the frozen codebook, one file per recording
    import importlib.util
    spec = importlib.util.spec_from_file_location("codebook_ceiling",
                                                  Path(__file__).parents[2] / "tools/codebook_ceiling.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    stats = tool.reconstruct(str(tmp_path / "ct"), str(toy_dataset), tmp_path / "rec")
    for r in idx.split("test"):
        truth = load_sample(idx, r).vertices
        assert np.load(tmp_path / "rec" / f"{r.name}.npy").shape == truth.shape
    size = a["vqvae.quantizer.codebook"].shape[0]
    assert 1 <= stats["perplexity"] <= stats["codes_used"] <= stats["codebook_size"] == size
    # by hand: two entries used twice each -> perplexity 2; one entry -> 1
    assert tool.code_statistics(torch.tensor([2.0, 0.0, 2.0, 0.0])) == {"codes_used": 2, "codebook_size": 4,
                                                                         "perplexity": pytest.approx(2.0)}
    assert tool.code_statistics(torch.tensor([0.0, 5.0, 0.0]))["perplexity"] == pytest.approx(1.0)


def test_ddp_two_processes_gloo(toy_dataset, tmp_path):
    """torchrun with 2 CPU processes: training runs, replicas are checked identical each epoch."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "avguide.cli", "train", "--stage", "baseline", "--data", str(toy_dataset),
           "--out", str(tmp_path / "ddp"), *TINY, "optim.epochs=2", "device=cpu"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "replicas identical across 2 processes" in res.stdout
    _, meta, _ = load_checkpoint(tmp_path / "ddp")
    assert meta["epoch"] == 2


def test_cli_overrides_may_follow_options(tmp_path, capsys):
    import pytest

    from avguide.cli import main

    # overrides before and after an option both reach the config (here: rejected by name)
    assert main(["train", "--stage", "baseline", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                 "nokey_a=1", "--seed", "1", "nokey_b=2"]) == 2
    err = capsys.readouterr().err
    assert "nokey_a" in err and "nokey_b" in err
    with pytest.raises(SystemExit) as e:
        main(["train", "--stage", "baseline", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--bogus"])
    assert e.value.code == 2
    assert main(["train", "--stage", "baseline", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                 "--seed", "1", "stray"]) == 2
    assert "'stray': expected key=value" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # animate takes no overrides
        main(["animate", "x.wav", "--checkpoint", "r", "-o", str(tmp_path), "a=1"])
    assert e.value.code == 2


def test_resume_overrides_are_applied_or_refused(toy_dataset, tmp_path):
    """``--resume RUN optim.lr=X`` trains the resumed epochs at X (the restored optimiser's rate);
    a change of the model's shape, the data or the batch size is refused, naming the key."""
    train_animator(_cfg(toy_dataset, "optim.epochs=1"), tmp_path / "r")
    cfg = load_train_config(None, ["optim.epochs=2", "optim.lr=5e-4"], str(tmp_path / "r"))
    train_animator(cfg, tmp_path / "r", resume=True)
    _, meta, ckpt = load_checkpoint(tmp_path / "r")
    from avguide.checkpoint import load_train_state

    assert meta["epoch"] == 2 and meta["config"]["optim"]["lr"] == 5e-4
    assert [g["lr"] for g in load_train_state(ckpt)["optimizer"]["param_groups"]] == [5e-4]
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    assert saved["optim"]["lr"] == 5e-4 and saved["optim"]["epochs"] == 2  # the next resume starts from these
    for bad, key in ((["model.feature_dim=32"], "model.feature_dim"), (["optim.batch_size=1"], "optim.batch_size"),
                     ([f"data={tmp_path}"], "data"), (["seed=5"], "seed"), (["stage=av", "av.expert=x"], "stage")):
        with pytest.raises(BadInputError, match=rf"cannot change .*{key} \(") as e:
            load_train_config(None, bad, str(tmp_path / "r"))
        assert "--out" in str(e.value)


def test_train_flags_are_overrides(toy_dataset, tmp_path, capsys):
    """Each flag is its key=value; one the stage does not use, or one an override contradicts, is
    refused in one line before any work."""
    base = ["train", "--data", str(toy_dataset), "--out", str(tmp_path / "x")]
    for argv, message in (
            ([*base, "--stage", "baseline", "--modality", "video"], "--modality is not used by --stage baseline"),
            ([*base, "--stage", "vq", "--animator", "codetalker", "--expert", "E"],
             "--expert is not used by --stage vq"),
            ([*base, "--stage", "expert", "--animator", "faceformer"], "--animator is not used by --stage expert"),
            ([*base, "--stage", "expert", "--expert", "E"], "--expert is not used by --stage expert"),
            ([*base, "--stage", "baseline", "--seed", "1", "seed=2"], "--seed 1 and seed=2 set seed to different"),
            ([*base, "--stage", "av", "--expert", "A", "av.expert=B"], "--expert A and av.expert=B set av.expert"),
            ([*base, "--stage", "baseline", "stage=vq"], "--stage baseline and stage=vq set stage"),
            ([*base, "--stage", "expert", "--modality", "av", "modality=video"], "--modality av and modality=video")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "x").exists()
    # a flag and an override that agree are fine: this one fails later, on its config, not on the flags
    assert main([*base, "--stage", "baseline", "--seed", "1", "seed=1", "optim.lr=-1"]) == 2
    assert "optim.lr: must be > 0" in capsys.readouterr().err


def test_patience_stops_the_loop_early(toy_dataset, tmp_path, capsys):
    """No epoch can be 99 % better than the first: with patience 1 the loop ends after epoch 2."""
    out = train_animator(_cfg(toy_dataset, "optim.epochs=5", "optim.patience=1", "optim.min_improvement=0.99"),
                         tmp_path / "r")
    assert out["epochs"] == 2 and len((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()) == 2
    assert "stopping early at epoch 2" in capsys.readouterr().out
