"""The run core: a kill at any write of a save leaves a run that resumes exactly, with last.json,
best.json and metrics.jsonl in agreement; a lock; corrupt run files named in one line; a run
killed before its first checkpoint restarts; resume overrides applied or refused."""

import json
import shutil

import pytest
import torch

import avguide.checkpoint as checkpoint_module
import avguide.train.run as run_module
from avguide.checkpoint import checkpoint_dir, load_checkpoint, load_train_state
from avguide.errors import BadInputError, MissingFileError
from avguide.train.run import Run

EPOCHS = 4  # train_toy's (tests/train/conftest.py) default; its best epoch is 3, not the last


class Killed(BaseException):
    """Stands for SIGKILL: nothing catches it."""


def _rows(run):
    return [{k: v for k, v in json.loads(x).items() if k != "seconds"}
            for x in (run / "metrics.jsonl").read_text().splitlines()]


def assert_consistent(run):
    """last.json, best.json and metrics.jsonl agree with each other and with the checkpoints."""
    last = json.loads((run / "last.json").read_text())["checkpoint"]
    meta = json.loads((run / last / "meta.json").read_text())
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == list(range(1, meta["epoch"] + 1))
    assert rows[-1]["step"] == meta["step"] and f"ckpt-{meta['step']:08d}" == last
    best_row = min(rows, key=lambda r: r["val"])
    best = json.loads((run / "best.json").read_text())
    assert best["checkpoint"] == f"ckpt-{best_row['step']:08d}" == checkpoint_dir(run, "best").name
    assert best["epoch"] == best_row["epoch"] and (run / best["checkpoint"] / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, train_toy):
    run = tmp_path_factory.mktemp("ref") / "run"
    model = train_toy(run)
    assert_consistent(run)
    return model.state_dict(), _rows(run)


def _writes(monkeypatch, kill_at):
    """Count the file writes of the run core and "kill" the process at write number ``kill_at``:
    an atomic write dies before its rename (its temporary file left behind), an append halfway
    through its line."""
    count = [0]

    def wrap(fn, partial_append=False):
        def inner(path, *args, **kwargs):
            count[0] += 1
            if count[0] == kill_at:
                if partial_append:  # half a line, no newline
                    with open(path, "a") as f:
                        f.write(json.dumps(args[0])[:10])
                else:  # atomic_path makes the directory, then the temporary file
                    path.parent.mkdir(parents=True, exist_ok=True)
                    (path.parent / f".{path.name}.x.tmp").write_bytes(b"partial")
                raise Killed
            return fn(path, *args, **kwargs)
        return inner

    for module in (checkpoint_module, run_module):
        for name in ("save_safetensors_atomic", "save_torch_atomic", "write_json_atomic", "write_text_atomic"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, wrap(getattr(module, name)))
    monkeypatch.setattr(run_module, "append_jsonl", wrap(run_module.append_jsonl, partial_append=True))
    return count


def test_a_kill_at_every_write_resumes_exactly_and_consistently(tmp_path, monkeypatch, reference, train_toy):
    weights, rows = reference
    with monkeypatch.context() as m:
        total = _writes(m, kill_at=0)
        train_toy(tmp_path / "count")
    assert total[0] >= 5 * EPOCHS  # config, weights, train state, meta, last (+ best, metrics line) per epoch
    for kill_at in range(1, total[0] + 1):
        run = tmp_path / f"k{kill_at}"
        with monkeypatch.context() as m, pytest.raises(Killed):
            _writes(m, kill_at)
            train_toy(run)
        if (run / "last.json").is_file():  # readers follow the committed record, repaired or not
            last = json.loads((run / "last.json").read_text())["checkpoint"]
            recorded = json.loads((run / last / "meta.json").read_text())["best_checkpoint"]
            assert checkpoint_dir(run, "best").name == recorded
        resumed = train_toy(run, resume=(run / "config.json").is_file())  # killed before config.json: no run yet
        assert_consistent(run)
        assert _rows(run) == rows, kill_at
        for k, v in weights.items():
            torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0, msg=f"kill at {kill_at}: {k}")
        assert not list(run.glob("**/.*.tmp")), kill_at


def test_lock_refuses_a_second_process(tmp_path, train_toy):
    with Run(tmp_path / "r", {"a": 1}):
        with pytest.raises(BadInputError, match="another process is training this run"):
            Run(tmp_path / "r", {"a": 1}, resume=True)
    train_toy(tmp_path / "r2", epochs=1)
    with Run(tmp_path / "r2", {"lr": 1e-2}, resume=True):  # released when a run ends
        pass


def test_a_run_killed_before_its_first_checkpoint_restarts(tmp_path, monkeypatch, reference, train_toy):
    weights, rows = reference
    for flag in ("resume", "out"):
        run = tmp_path / flag
        with monkeypatch.context() as m, pytest.raises(Killed):
            _writes(m, kill_at=3)  # config.json, weights and train state written; meta.json is not
            train_toy(run)
        assert (run / "config.json").is_file() and not (run / "last.json").exists()
        model = train_toy(run, resume=flag == "resume")
        assert _rows(run) == rows
        for k, v in weights.items():
            torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0)


def test_partial_metrics_line_is_repaired(tmp_path, reference, train_toy):
    _, rows = reference
    run = tmp_path / "r"
    train_toy(run, epochs=2)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "st')  # a write cut by a kill
    train_toy(run, resume=True)
    assert _rows(run) == rows


@pytest.mark.parametrize("name,damage", [
    ("ckpt-00000008/model.safetensors", b""),
    ("ckpt-00000008/model.safetensors", b"\x00" * 7),
    ("ckpt-00000008/model.safetensors", bytes(range(256)) * 4),
    ("ckpt-00000008/train_state.pt", b"PK\x03\x04 truncated"),
    ("ckpt-00000008/train_state.pt", b""),
    ("ckpt-00000008/meta.json", b'{"epoch": 2, "st'),
    ("last.json", b'{"checkpoint": '),
    ("last.json", b"[1, 2]"),
    ("config.json", b"\xff\xfe binary"),
])
def test_corrupt_run_files_are_one_line_naming_the_file(tmp_path, reference, name, damage, train_toy):
    run = tmp_path / "r"
    train_toy(run)
    (run / name).write_bytes(damage)
    with pytest.raises(BadInputError) as e:
        if name == "config.json":
            run_module.saved_config(run)
        else:
            train_toy(run, resume=True, epochs=EPOCHS + 1)
    assert str(run / name) in str(e.value) and "\n" not in str(e.value)
    if name.startswith("ckpt-") and name.endswith("model.safetensors"):
        with pytest.raises(BadInputError, match="model.safetensors"):
            load_checkpoint(run)


def test_a_broken_metrics_line_or_best_pointer(tmp_path, reference, train_toy):
    _, rows = reference
    run = tmp_path / "r"
    train_toy(run)
    (run / "best.json").write_text("{")  # derived from the record: rewritten on resume
    text = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([text[0], "garbage", *text[1:]]) + "\n")
    with pytest.raises(BadInputError, match="metrics.jsonl: corrupt metrics log: line 2"):
        train_toy(run, resume=True)
    (run / "metrics.jsonl").write_text("\n".join(text) + "\n")
    train_toy(run, resume=True, epochs=EPOCHS)
    assert_consistent(run) is None and _rows(run) == rows


def test_resume_without_a_run(tmp_path):
    with pytest.raises(MissingFileError, match="no run there"):
        Run(tmp_path / "nothing", {}, resume=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInputError, match="not a directory"):
        Run(tmp_path / "file", {})


def test_train_state_keeps_rng_and_optimizer(tmp_path, train_toy):
    train_toy(tmp_path / "r", epochs=1)
    state = load_train_state(checkpoint_dir(tmp_path / "r"))
    assert set(state) == {"optimizer"}
    shutil.rmtree(tmp_path / "r")


def _scores(run, scores, min_improvement=0.0, patience=0, resume=False):
    """Save one checkpoint per score (epochs counted on from the run's last), the loops' way:
    stop at the top of an epoch once the run has stalled. Returns the epochs trained."""
    model = torch.nn.Linear(2, 1)
    trained = []
    with Run(run, {}, resume=resume, min_improvement=min_improvement) as r:
        for epoch, score in enumerate(scores, r.epoch + 1):
            if r.stalled(patience):
                break
            r.save(model, {}, epoch=epoch, step=epoch, metrics={"val": score}, score=score, seconds=0.0)
            trained.append(epoch)
    return trained


@pytest.mark.parametrize("min_improvement, patience, expected", [
    (0.0, 2, [1, 2, 3, 4]),        # epoch 2 improves (2.0); 3 and 4 do not: stop before 5
    (0.0, 3, [1, 2, 3, 4, 5]),     # 5 improves (1.9 < 2.0), the budget ends first
    (0.1, 2, [1, 2, 3, 4]),        # 1.9 is not 10 % below 2.0 either
    (0.4, 2, [1, 2, 3]),           # 2.0 is not 40 % below 3.0: the last improvement is epoch 1
    (0.0, 0, [1, 2, 3, 4, 5]),     # no early stopping
])
def test_early_stopping_counts_epochs_since_the_last_improvement(tmp_path, min_improvement, patience, expected):
    assert _scores(tmp_path / "r", [3.0, 2.0, 2.5, 2.2, 1.9], min_improvement, patience) == expected


def test_early_stopping_survives_resume_and_old_records(tmp_path):
    run = tmp_path / "r"
    assert _scores(run, [3.0, 2.0, 2.5]) == [1, 2, 3]
    assert _scores(run, [2.4, 1.0], patience=2, resume=True) == [4]  # stalled after epoch 4: 5 never runs
    # a record written before "improved" existed: the best checkpoint's epoch stands in
    last = run / json.loads((run / "last.json").read_text())["checkpoint"]
    meta = json.loads((last / "meta.json").read_text())
    del meta["improved"]
    (last / "meta.json").write_text(json.dumps(meta))
    with Run(run, {}, resume=True) as r:
        assert r.improved == (2.0, 2) and r.stalled(2) and not r.stalled(3)
