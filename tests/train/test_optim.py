"""One optimiser config for both loops: the defaults of each loop, the schedule, and a resumed
run taking a new learning rate or length."""

import math

import pytest
import torch

from avguide.train.optim import OptimConfig, build_optimizer, expert_optim, restore_optimizer, schedule_factor


def test_defaults_are_each_loops_recipe():
    anim, expert = OptimConfig(), expert_optim()
    assert (anim.optimizer, anim.lr, anim.betas, anim.weight_decay, anim.schedule, anim.grad_clip) == \
        ("adam", 1e-4, (0.9, 0.999), 0.0, "none", 1.0)
    assert (expert.optimizer, expert.lr, expert.betas, expert.weight_decay, expert.schedule, expert.warmup_epochs,
            expert.grad_clip, expert.batch_size, expert.epochs) == ("adamw", 1e-3, (0.9, 0.98), 0.03, "cosine", 3.0,
                                                                     5.0, 8, 60)
    opt, sched = build_optimizer([{"params": [torch.zeros(1, requires_grad=True)]}], anim, 10)
    assert type(opt) is torch.optim.Adam and sched is None
    opt, sched = build_optimizer([{"params": [torch.zeros(1, requires_grad=True)]}], expert, 10)
    assert type(opt) is torch.optim.AdamW and opt.defaults["betas"] == (0.9, 0.98) and sched is not None
    assert any("warmup_epochs: only with schedule=cosine" in e for e in OptimConfig(warmup_epochs=1).check())


def test_cosine_schedule_factors():
    """2 warm-up steps of 10 (epochs 5 x 2 steps, warm-up 1 epoch): (s + 1) / 2, then half a cosine
    over the 8 remaining steps."""
    f = schedule_factor(OptimConfig(schedule="cosine", epochs=5, warmup_epochs=1.0), 2)
    expected = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)] + [0.0]
    assert [f(s) for s in range(11)] == pytest.approx(expected, abs=1e-15)
    assert schedule_factor(OptimConfig(), 2)(7) == 1.0


def _run(cfg, steps, state=None, resume_cfg=None):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.ones(3))
    opt, sched = build_optimizer([{"params": [w]}], cfg, 4)
    if state is not None:
        restore_optimizer(opt, sched, state, resume_cfg, [resume_cfg.lr], 4, "ckpt")
        cfg = resume_cfg
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        w.grad = torch.ones(3)
        opt.step()
        sched.step()
    return {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, lrs


def test_resume_applies_the_new_rate_and_length():
    cfg = OptimConfig(optimizer="adamw", schedule="cosine", lr=1e-2, epochs=4, warmup_epochs=0.5, weight_decay=0.1)
    full_state, full = _run(cfg, 8)
    half, first = _run(cfg, 4)
    _, rest = _run(cfg, 4, half, cfg)
    assert first + rest == full  # unchanged settings: the same rates, exactly
    longer = OptimConfig(**{**cfg.__dict__, "lr": 2e-2, "epochs": 8, "weight_decay": 0.0})
    _, rest = _run(cfg, 4, half, longer)
    f = schedule_factor(longer, 4)
    assert rest == pytest.approx([2e-2 * f(s) for s in range(4, 8)], rel=1e-12)
    with pytest.raises(Exception, match="ckpt/train_state.pt: its optimiser state does not fit"):
        _run(OptimConfig(), 1, {"optimizer": {"state": {}, "param_groups": []}}, OptimConfig())
