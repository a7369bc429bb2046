"""Stage av (AV-guided animator training): the AV loss reaches the vertices (finite differences),
frozen vs fine-tuned expert, gradient probes in the logs, exact resume."""

import json
import math

import pytest
import torch

from avguide.data.batching import RecordingDataset, collate
from avguide.data.layouts import open_dataset
from avguide.errors import BadInputError
from avguide.lipreader.reader import load_trained_expert
import dataclasses

from avguide.train.avguidance import AVGuidance, AVGuidanceConfig, balanced_l_av, gradient_probe, loss_weights
from avguide.train.animator import load_train_config, train_animator
from avguide.checkpoint import load_checkpoint, load_train_state

AV_TINY = ["preset=tiny", "optim.batch_size=2", "optim.lr=1e-3", "seed=3", "stage=av", "av.l_av=1e-3",
           "av.l_rlv=1", "av.probe_every=1"]


def _batch(data):
    index = open_dataset(data)
    refs = index.split("train")
    ds = RecordingDataset(index, refs, need_text=True)
    return index, collate([ds[i] for i in range(len(ds))])


def _guide(index, expert_run, mode="frozen", **kw):
    cfg = AVGuidanceConfig(expert=str(expert_run), which="last", expert_mode=mode, **kw)
    return AVGuidance(cfg, index.n_vertices, torch.as_tensor(index.regions["lips"]), torch.device("cpu"))


def test_av_gradient_reaches_lip_vertices_and_matches_finite_differences(synth_av):
    data, expert_run = synth_av
    index, batch = _batch(data)
    guide = _guide(index, expert_run)
    guide.expert.double()
    batch.vertices, batch.template, batch.audio = batch.vertices.double(), batch.template.double(), batch.audio.double()
    torch.manual_seed(0)
    # a prediction away from the ground truth (mouth partly closed): the expert has something to fix
    pred = (batch.template[:, None] + 0.6 * (batch.vertices - batch.template[:, None])).detach().requires_grad_()

    def l_av(p):
        terms = guide.losses(p, batch)
        return 0.1 * terms["ctc"] + 0.9 * terms["ce"]

    loss = l_av(pred)
    (g,) = torch.autograd.grad(loss, pred)
    lips = guide.lips
    g_lips = g[:, :, lips]
    assert torch.isfinite(g).all()
    assert g_lips.norm() > 0 and g_lips.abs().amax() > 1e-6 * g.abs().amax()
    # directional finite difference along the gradient restricted to the lip vertices
    d = torch.zeros_like(pred)
    d[:, :, lips] = g_lips / g_lips.norm()
    eps = 1e-5  # metres: far below a pixel (lip image ~ 7 cm / 17 px)
    with torch.no_grad():
        fd = (l_av(pred + eps * d) - l_av(pred - eps * d)) / (2 * eps)
    analytic = (g * d).sum()
    assert float(analytic) > 0
    assert abs(float(fd) - float(analytic)) < 0.05 * abs(float(analytic)), (float(fd), float(analytic))


def test_frozen_expert_gets_no_gradient_finetuned_does(synth_av):
    data, expert_run = synth_av
    index, batch = _batch(data)
    for mode in ("frozen", "finetune"):
        guide = _guide(index, expert_run, mode)
        pred = batch.vertices.clone().requires_grad_()
        terms = guide.losses(pred, batch)
        (terms["ctc"] + terms["ce"]).backward()
        grads = [p.grad for p in guide.expert.parameters()]
        if mode == "frozen":
            assert all(g is None for g in grads) and not guide.expert.training
        else:
            assert any(g is not None and g.abs().sum() > 0 for g in grads)
        assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_guidance_counts_recordings_whose_ctc_target_does_not_fit(synth_av):
    """Meshes cut to a few frames leave the expert fewer 25 fps frames than the transcript has
    tokens (plus a blank between repeats): those recordings, counted here from the token ids and
    the rendered lengths, are the ones the guide reports, and the count restarts when taken."""
    data, expert_run = synth_av
    index, batch = _batch(data)
    guide = _guide(index, expert_run)
    batch.lengths = batch.lengths.clone()
    batch.lengths[0] = 8  # frames at 30 fps: 7 at 25 fps, fewer than any sentence's units
    guide.losses(batch.vertices, batch)
    _, len25 = guide.video(batch.vertices, batch.lengths, batch.template, batch.fps)
    expected = 0
    for text, frames in zip(batch.texts, len25.tolist()):
        ids = guide.tokenizer.encode(text)
        expected += len(ids) + sum(a == b for a, b in zip(ids, ids[1:])) > frames
    assert 0 < expected < len(batch.names)
    assert guide.take_unfit_counts() == {"ctc_unfit": expected, "ctc_read": len(batch.names)}
    assert guide.take_unfit_counts() == {"ctc_unfit": 0, "ctc_read": 0}


def test_gradient_probe_scales_with_weights(synth_av):
    data, expert_run = synth_av
    index, batch = _batch(data)
    guide = _guide(index, expert_run)
    pred = (batch.template[:, None] + 0.5 * (batch.vertices - batch.template[:, None])).detach().requires_grad_()
    losses = {"mse": ((pred - batch.vertices) ** 2).mean(), **guide.losses(pred, batch)}
    truth = (batch.vertices, batch.lengths)
    a = gradient_probe(pred, losses, AVGuidanceConfig(l_av=1e-3), guide.lips, truth=truth)
    b = gradient_probe(pred, losses, AVGuidanceConfig(l_av=2e-3, l_mse=3.0), guide.lips, truth=truth)
    assert -1 <= a["cos_av_truth"] <= 1 and a["cos_av_truth"] != 0
    assert b["cos_av_truth"] == pytest.approx(a["cos_av_truth"], rel=1e-9)  # a weight scales, never turns
    assert a["gnorm_av"] > 0 and a["gnorm_mse"] > 0 and math.isfinite(a["gnorm_av"])
    assert b["gnorm_av"] == pytest.approx(2 * a["gnorm_av"], rel=1e-5)
    assert b["gnorm_mse"] == pytest.approx(3 * a["gnorm_mse"], rel=1e-5)
    assert a["gnorm_av_unit"] == pytest.approx(b["gnorm_av_unit"], rel=1e-6)
    # independent check of the MSE norm: d mean((p - v)^2) / dp = 2 (p - v) / N
    expected = float((2 * (pred - batch.vertices) / pred.numel()).detach().norm())
    assert a["gnorm_mse"] == pytest.approx(expected, rel=1e-4)
    assert loss_weights(AVGuidanceConfig(l_av=2.0, l_ctc=0.1, l_ce=0.9)) == pytest.approx(
        {"mse": 1.0, "ctc": 0.2, "ce": 1.8, "rlv": 0.0})


def test_balanced_l_av_sets_the_gradient_ratio(synth_av, tmp_path):
    data, expert_run = synth_av
    index, batch = _batch(data)
    guide = _guide(index, expert_run)
    pred = (batch.template[:, None] + 0.5 * (batch.vertices - batch.template[:, None])).detach().requires_grad_()
    losses = {"mse": ((pred - batch.vertices) ** 2).mean(), **guide.losses(pred, batch)}
    cfg = AVGuidanceConfig(balance=0.25, l_mse=2.0)
    l_av = balanced_l_av(pred, losses, cfg)
    probe = gradient_probe(pred, losses, dataclasses.replace(cfg, l_av=l_av), guide.lips)
    assert probe["gnorm_ratio"] == pytest.approx(0.25, rel=1e-5)
    # in training: every probed step logs the balanced ratio, and the l_av used
    cfg = load_train_config(None, [f"data={data}", *AV_TINY, "optim.epochs=1", f"av.expert={expert_run}",
                                   "av.which=last", "av.balance=0.5"], None)
    train_animator(cfg, tmp_path / "bal")
    row = json.loads((tmp_path / "bal" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train_gnorm_ratio"] == pytest.approx(0.5, rel=1e-4) and row["train_l_av"] > 0
    assert -1 <= row["train_cos_av_truth"] <= 1
    assert row["train_ctc_unfit"] == 0  # every transcript fits the expert's SentencePiece units
    cfg = load_train_config(None, [f"data={data}", *AV_TINY, "optim.epochs=1", f"av.expert={expert_run}",
                                   "av.which=last", "av.balance=0.5", "av.balance_on=parameters"], None)
    train_animator(cfg, tmp_path / "bal_params")  # the training loop passes the animator's parameters
    row = json.loads((tmp_path / "bal_params" / "metrics.jsonl").read_text().splitlines()[0])
    assert math.isfinite(row["train_l_av"]) and row["train_l_av"] > 0


def test_balance_on_parameters_counts_terms_that_bypass_the_vertices(synth_av):
    """balance_on=parameters: |d(l_av L_av)/d(theta)| = balance * |d(own losses)/d(theta)|, checked
    with plain .backward() into .grad; an own term that never reaches the vertices (CodeTalker's
    code regression) raises the balanced l_av, which the vertex balance cannot see."""
    data, expert_run = synth_av
    index, batch = _batch(data)
    guide = _guide(index, expert_run)
    offsets = (batch.vertices - batch.template[:, None]).detach()
    theta = (0.5 * offsets).clone().requires_grad_()  # "features" of a toy animator
    scale = torch.tensor(1.0, requires_grad=True)

    def forward():
        pred = batch.template[:, None] + scale * theta
        losses = {"mse": ((pred - batch.vertices) ** 2).mean(), "reg": ((1e3 * (theta - offsets)) ** 2).mean(),
                  **guide.losses(pred, batch)}
        return pred, losses

    weights = {"mse": 1.0, "reg": 1.0, "ctc": 0.0, "ce": 0.0, "rlv": 0.0}
    cfg = AVGuidanceConfig(balance=0.3, balance_on="parameters")
    pred, losses = forward()
    l_av = balanced_l_av(pred, losses, cfg, [theta, scale], weights)
    norms = []
    for value in (lambda ls: l_av * (cfg.l_ctc * ls["ctc"] + cfg.l_ce * ls["ce"]), lambda ls: ls["mse"] + ls["reg"]):
        theta.grad = scale.grad = None
        value(forward()[1]).backward()
        norms.append(float(torch.sqrt(theta.grad.square().sum() + scale.grad.square())))
    assert norms[0] / norms[1] == pytest.approx(0.3, rel=1e-4)
    on_vertices = balanced_l_av(pred, losses, dataclasses.replace(cfg, balance_on="vertices"))
    assert l_av > 100 * on_vertices  # the regression term dominates what trains theta


def test_av_stage_logs_probes_and_finetunes_expert(synth_av, tmp_path):
    data, expert_run = synth_av
    cfg = load_train_config(None, [f"data={data}", *AV_TINY, "optim.epochs=1", f"av.expert={expert_run}",
                                   "av.which=last", "av.expert_mode=finetune", "av.expert_lr=1e-3"], None)
    train_animator(cfg, tmp_path / "ft")
    rows = [json.loads(x) for x in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    for key in ("train_gnorm_av", "train_gnorm_av_lips", "train_gnorm_mse"):
        assert math.isfinite(rows[0][key]) and rows[0][key] > 0, key
    assert rows[0]["train_ctc"] > 0 and rows[0]["train_ce"] > 0
    _, meta, ckpt = load_checkpoint(tmp_path / "ft")
    assert meta["config"]["av"]["expert_mode"] == "finetune" and meta["config"]["stage"] == "av"
    tuned = load_train_state(ckpt)["expert"]
    orig = load_trained_expert(expert_run, "last").model.state_dict()
    assert any(not torch.equal(tuned[k], orig[k]) for k in orig if orig[k].dtype.is_floating_point)
    # frozen: nothing of the expert is saved or changed
    cfg = load_train_config(None, [f"data={data}", *AV_TINY, "optim.epochs=1", f"av.expert={expert_run}",
                                   "av.which=last"], None)
    train_animator(cfg, tmp_path / "fz")
    _, _, ckpt = load_checkpoint(tmp_path / "fz")
    assert "expert" not in load_train_state(ckpt)
    after = load_trained_expert(expert_run, "last").model.state_dict()
    assert all(torch.equal(after[k], orig[k]) for k in orig)


def test_av_resume_is_exact(synth_av, tmp_path):
    data, expert_run = synth_av
    common = [f"data={data}", *AV_TINY, f"av.expert={expert_run}", "av.which=last", "av.expert_mode=finetune"]
    train_animator(load_train_config(None, [*common, "optim.epochs=2"], None), tmp_path / "full")
    train_animator(load_train_config(None, [*common, "optim.epochs=1"], None), tmp_path / "part")
    train_animator(load_train_config(None, ["optim.epochs=2"], str(tmp_path / "part")), tmp_path / "part", resume=True)
    a, meta_a, ca = load_checkpoint(tmp_path / "full")
    b, meta_b, cb = load_checkpoint(tmp_path / "part")
    assert meta_a["epoch"] == meta_b["epoch"] == 2
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    ea, eb = load_train_state(ca)["expert"], load_train_state(cb)["expert"]
    for k in ea:
        torch.testing.assert_close(ea[k], eb[k], rtol=0, atol=0, msg=k)
    assert meta_a["train_gnorm_av"] == meta_b["train_gnorm_av"]


def test_av_stage_config_errors(synth_av):
    data, _ = synth_av
    with pytest.raises(BadInputError, match="av.expert"):
        load_train_config(None, [f"data={data}", "stage=av"], None)
    with pytest.raises(BadInputError, match="av.l_av"):
        load_train_config(None, [f"data={data}", "stage=av", "av.expert=x", "av.l_av=-1"], None)


def test_audio_variants_apply_to_training_steps_only(synth_av):
    """av.audio_drop=1: in training steps the expert hears zeros (as when it reads silence by
    itself), in evaluation the clean audio; noise gives a third reading."""
    from avguide.lipreader.preprocess import align_audio, normalize_audio

    data, expert_run = synth_av
    index, batch = _batch(data)
    dropped_guide, noisy_guide = _guide(index, expert_run, audio_drop=1.0), _guide(index, expert_run, audio_noise_prob=1.0)
    with torch.no_grad():
        clean = dropped_guide.losses(batch.vertices, batch)  # a new guidance evaluates
        dropped_guide.train(True)
        dropped = dropped_guide.losses(batch.vertices, batch)
        noisy_guide.train(True)
        noisy = noisy_guide.losses(batch.vertices, batch)
        video, len25 = dropped_guide.video(batch.vertices, batch.lengths, batch.template, batch.fps)
        audio, alen = align_audio(batch.audio, batch.audio_lengths, len25)
        silent = dropped_guide.expert(video, len25, normalize_audio(torch.zeros_like(audio), alen), alen,
                                      dropped_guide.targets(batch.texts))
    assert float(dropped["ctc"]) == pytest.approx(float(silent["loss_ctc"]), rel=1e-6)
    assert float(dropped["ce"]) == pytest.approx(float(silent["loss_att"]), rel=1e-6)
    assert len({float(clean["ctc"]), float(dropped["ctc"]), float(noisy["ctc"])}) == 3
    with pytest.raises(BadInputError, match="av.audio_drop"):
        load_train_config(None, [f"data={data}", *AV_TINY, f"av.expert={expert_run}", "av.audio_drop=2"], None)
