"""AVGuidance.step, the AV part of a training step, leaves in .grad exactly the gradient of the
weighted sum of the terms it logs (computed here the plain way, through one graph), whichever
path it takes: a fixed l_av, gradient probes, l_av balanced on the vertices or on the parameters
(the parameter gradients the balance takes reused, or one more backward with a lip term)."""

import pytest
import torch

from avguide.config import load_config
from avguide.data.batching import RecordingDataset, collate
from avguide.data.layouts import open_dataset
from avguide.lipreader.lipvideo import assets_from_dataset
from avguide.lipreader.model import build_expert
from avguide.lipreader.reader import TrainedExpert, make_tokenizer
from avguide.presets import expert_preset
from avguide.train.avguidance import AVGuidance, AVGuidanceConfig, loss_weights

TINY = dict(adim=16, aheads=2, eunits=32, elayers=1, aux_adim=16, aux_aheads=2, aux_eunits=32, aux_elayers=1,
            fusion_hdim=32, ddim=16, dheads=2, dunits=32, dlayers=1, visual_widths=(4, 4, 8, 8),
            audio_widths=(4, 4, 8, 8), cnn_module_kernel=3, aux_cnn_module_kernel=3)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """A generated 3 x 2 synthetic set, its training batch in float64, an untrained tiny AV expert."""
    import dataclasses

    from avguide.synth.generator import SynthConfig, generate

    data = tmp_path_factory.mktemp("step") / "data"
    generate(load_config(SynthConfig, None, ["subjects=3", "sentences=2", "workers=1"]), data)
    index = open_dataset(data)
    ds = RecordingDataset(index, index.split("train"), need_text=True)
    batch = collate([ds[i] for i in range(len(ds))])
    batch.vertices, batch.template, batch.audio = batch.vertices.double(), batch.template.double(), batch.audio.double()
    tok = make_tokenizer("spm")
    torch.manual_seed(0)
    model = build_expert(dataclasses.replace(expert_preset("av", "cpu_small", tok.odim), **TINY)).double().eval()
    expert = TrainedExpert(model, tok, 16, "template", assets_from_dataset(index), {"tokenizer": "spm"}, None)
    return index, batch, expert


@pytest.mark.parametrize("av", [
    {},                                                     # fixed l_av: one backward from the pixels
    {"probe_every": 1},                                     # probes: the AV gradient taken at the vertices
    {"balance": 0.3},                                       # balanced on the vertices
    {"balance": 0.3, "balance_on": "parameters"},           # ... on the parameters, their gradients reused
    {"balance": 0.3, "balance_on": "parameters", "l_rlv": 2.0},  # ... with a lip term: one more backward
])
def test_step_gradient_is_the_weighted_sum_of_its_terms(setting, av):
    index, batch, expert = setting
    offsets = (batch.vertices - batch.template[:, None]).detach()
    theta = (0.5 * offsets).clone().requires_grad_()  # a toy animator: features and a gain
    gain = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)

    def forward():
        pred = batch.template[:, None] + gain * theta  # (B, T, V, 3)
        reg = ((theta - offsets) ** 2).mean()  # a term that bypasses the vertices (as CodeTalker's)
        return pred, {"mse": ((pred - batch.vertices) ** 2).mean(), "reg": reg}

    cfg = AVGuidanceConfig(**{"expert": "x", "l_av": 1e-3, "probe_every": 0, "render_workers": 1, **av})
    weights = {"mse": 1.0, "reg": 0.5, **loss_weights(cfg)}
    guide = AVGuidance(cfg, index.n_vertices, torch.as_tensor(index.regions["lips"]), torch.device("cpu"), expert,
                       weights=weights, params=[theta, gain])
    pred, losses = forward()
    backward, logs = guide.step(pred, batch, losses, 0)
    backward()
    got = [theta.grad.clone(), gain.grad.clone()]
    assert ("l_av" in logs) == ("balance" in av) and ("gnorm_av" in logs) == ("probe_every" in av)
    l_av = logs.get("l_av", cfg.l_av)
    assert l_av > 0

    theta.grad = gain.grad = None  # the plain way: every term through one graph, one backward
    pred, losses = forward()
    from avguide.animators.common import masked_mse

    terms = {**losses, "mse": masked_mse(pred, batch.vertices, batch.lengths), **guide.losses(pred, batch)}
    w = {**weights, **loss_weights(AVGuidanceConfig(l_av=l_av, l_ctc=cfg.l_ctc, l_ce=cfg.l_ce, l_mse=cfg.l_mse,
                                                    l_rlv=cfg.l_rlv))}
    total = sum(w[k] * v for k, v in terms.items())
    total.backward()
    assert logs["total"] == pytest.approx(float(total.detach()), rel=1e-9)
    for g, ref in zip(got, [theta.grad, gain.grad]):
        assert ref.abs().max() > 0
        torch.testing.assert_close(g, ref, rtol=1e-9, atol=1e-12 * float(ref.abs().max()))
