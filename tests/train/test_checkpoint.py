import json

import pytest
import torch

from avguide.checkpoint import load_checkpoint
from avguide.errors import BadInputError, MissingFileError, TrainingDivergedError
from avguide.train.losses import check_finite, combine
from avguide.train.run import Run, seed_everything


def _train(run, epochs, resume=False):
    """A tiny loop using the run core the way every stage does."""
    seed_everything(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with Run(run, {"lr": 1e-2}, resume=resume) as r:
        state = r.restore(model)
        if state is not None:
            opt.load_state_dict(state["optimizer"])
        for epoch in range(r.epoch + 1, epochs + 1):
            x = torch.randn(16, 4)
            loss, logs = combine({"mse": model(x).pow(2).mean()}, {"mse": 1.0})
            opt.zero_grad()
            loss.backward()
            opt.step()
            r.save(model, {"optimizer": opt.state_dict()}, epoch=epoch, step=epoch, metrics=logs, score=-epoch,
                   seconds=0.0)
    return model


def test_resume_is_exact(tmp_path):
    full = _train(tmp_path / "a", 4)
    _train(tmp_path / "b", 2)
    resumed = _train(tmp_path / "b", 4, resume=True)
    for p, q in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_pointer_prune_and_meta(tmp_path):
    _train(tmp_path / "r", 4)
    assert json.loads((tmp_path / "r" / "last.json").read_text()) == {"checkpoint": "ckpt-00000004"}
    assert sorted(p.name for p in (tmp_path / "r").glob("ckpt-*")) == ["ckpt-00000003", "ckpt-00000004"]
    _, meta, _ = load_checkpoint(tmp_path / "r")
    assert meta["config"] == {"lr": 1e-2} and meta["epoch"] == 4 and "avguide_version" in meta


def test_run_dir_guards(tmp_path):
    _train(tmp_path / "r", 1)
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
