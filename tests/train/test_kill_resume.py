"""The real CLI killed with SIGKILL at random instants and resumed: the final weights and metrics
equal an uninterrupted run's exactly, and last.json, best.json and metrics.jsonl agree. And a
second process on a run that is training gets one clear line."""

import json
import os
import random
import subprocess
import sys
import time

import torch

from avguide.checkpoint import load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TINY = ["preset=tiny", "optim.batch_size=2", "optim.lr=1e-3", "seed=1", "optim.epochs=8"]
KILLS = 4


def _train(*args: str) -> list[str]:
    return [sys.executable, "-m", "avguide.cli", "train", "--stage", "baseline", *args]


def _wait_for(path, proc, timeout=120.0) -> float:
    """Seconds until ``path`` exists (or the process ends)."""
    t0 = time.perf_counter()
    while not path.exists() and proc.poll() is None and time.perf_counter() - t0 < timeout:
        time.sleep(0.01)
    return time.perf_counter() - t0


def _rows(run):
    return [{k: v for k, v in json.loads(x).items() if k != "seconds"}
            for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_sigkill_at_random_instants_then_resume_is_exact(toy_dataset, tmp_path):
    ref = tmp_path / "ref"
    t0 = time.perf_counter()
    proc = subprocess.Popen(_train("--data", str(toy_dataset), "--out", str(ref), *TINY), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    startup = _wait_for(ref / "config.json", proc)  # imports, data, model: then the run trains and saves
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    training = time.perf_counter() - t0 - startup

    run, rng, kills, launches = tmp_path / "run", random.Random(21), 0, 0
    while kills < KILLS and launches < 3 * KILLS:
        launches += 1
        started = (run / "config.json").is_file()  # else it died before it had a run directory
        args = ("--resume", str(run)) if started else ("--data", str(toy_dataset), "--out", str(run), *TINY)
        proc = subprocess.Popen(_train(*args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=startup + rng.uniform(0.0, 1.1 * training))
            assert proc.returncode == 0
            if json.loads((run / "last.json").read_text())["checkpoint"] == "ckpt-00000016":
                break  # finished before the kill: start again from scratch for the remaining kills
        except subprocess.TimeoutExpired:
            proc.kill()  # SIGKILL
            proc.wait()
            kills += 1
    res = subprocess.run(_train("--resume", str(run)), env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]

    a, meta_a, _ = load_checkpoint(ref)
    b, meta_b, _ = load_checkpoint(run)
    assert meta_a["epoch"] == meta_b["epoch"] == 8
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)
    rows = _rows(run)
    assert rows == _rows(ref) and [r["epoch"] for r in rows] == list(range(1, 9))
    best = min(rows, key=lambda r: r["val_total"])
    assert json.loads((run / "best.json").read_text())["checkpoint"] == f"ckpt-{best['step']:08d}"
    assert json.loads((run / "last.json").read_text())["checkpoint"] == f"ckpt-{rows[-1]['step']:08d}"


def test_a_second_process_on_a_training_run_is_refused(toy_dataset, tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen(_train("--data", str(toy_dataset), "--out", str(run), *TINY[:-1], "optim.epochs=100000"),
                             env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(run / "last.json", first)  # it holds the lock and has a checkpoint
        assert first.poll() is None
        second = subprocess.run(_train("--resume", str(run)), env=ENV, capture_output=True, text=True, timeout=120)
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [
        f"avguide train: error: {run}: another process is training this run (it holds {run / '.lock'}); wait for "
        "it to end or stop it"]
