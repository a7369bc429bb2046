import json

import pytest
import torch

from avguide.checkpoint import load_checkpoint
from avguide.errors import BadInputError, MissingFileError, TrainingDivergedError
from avguide.train.losses import check_finite, combine
from avguide.train.run import Run


def test_resume_is_exact(tmp_path, train_toy):
    full = train_toy(tmp_path / "a", 4)
    train_toy(tmp_path / "b", 2)
    resumed = train_toy(tmp_path / "b", 4, resume=True)
    for p, q in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_pointer_prune_and_meta(tmp_path, train_toy):
    train_toy(tmp_path / "r", 4)  # epoch e saves step 2e; the best is epoch 3 (step 6)
    assert json.loads((tmp_path / "r" / "last.json").read_text()) == {"checkpoint": "ckpt-00000008"}
    assert sorted(p.name for p in (tmp_path / "r").glob("ckpt-*")) == ["ckpt-00000006", "ckpt-00000008"]
    _, meta, _ = load_checkpoint(tmp_path / "r")
    assert meta["config"] == {"lr": 1e-2} and meta["epoch"] == 4 and "avguide_version" in meta


def test_run_dir_guards(tmp_path, train_toy):
    train_toy(tmp_path / "r", 1)
    with pytest.raises(BadInputError, match="already holds a run"):
        Run(tmp_path / "r", {}, resume=False)
    with pytest.raises(MissingFileError, match="no run there"):
        Run(tmp_path / "empty", {}, resume=True)
    with pytest.raises(MissingFileError, match="not a run or checkpoint"):
        load_checkpoint(tmp_path / "empty")


def test_combine_and_nan_guard():
    a, b = torch.tensor(2.0, requires_grad=True), torch.tensor(3.0, requires_grad=True)
    total, logs = combine({"mse": a, "av": b, "off": a * 10}, {"mse": 1.0, "av": 0.5, "off": 0.0})
    assert float(total.detach()) == 3.5 and logs == {"mse": 2.0, "av": 3.0, "off": 20.0, "total": 3.5}
    total.backward()
    assert a.grad == 1.0 and b.grad == 0.5
    with pytest.raises(KeyError):
        combine({"x": a}, {})
    with pytest.raises(TrainingDivergedError, match="av=nan.*epoch 3"):
        check_finite({"mse": 1.0, "av": float("nan")}, "epoch 3")
