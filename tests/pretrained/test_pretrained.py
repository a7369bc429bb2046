"""Shipped models: fp16 storage keeps predictions, sha256 checked on load, names resolved, table."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import avguide.pretrained as P
from avguide.animators import build_animator, faceformer_tiny
from avguide.cli import main
from avguide.errors import BadInputError, MissingFileError
from avguide.lipreader.config import ExpertConfig
from avguide.lipreader.model import build_expert


def _tiny_animator():
    torch.manual_seed(0)
    cfg = faceformer_tiny()
    cfg.audio.lookahead, cfg.context = 2, 12
    m = build_animator(cfg, 30, 3).eval()
    torch.nn.init.normal_(m.vertice_map_r.weight, std=0.02)
    torch.nn.init.normal_(m.vertice_map_r.bias, std=0.02)
    return m


def _fp16_copy(model, factory):
    params = {n for n, _ in model.named_parameters()}
    half = P.half_state_dict(model.state_dict(), params)
    assert all(half[n].dtype == torch.float16 for n in params if model.state_dict()[n].is_floating_point())
    copy = factory()
    copy.load_state_dict(half)  # cast back to float32
    return copy.eval()


def test_fp16_weights_reproduce_fp32_animation():
    """Tolerance: 1e-3 of the motion's range (fp16 has 11 significant bits: relative rounding 4.9e-4
    per weight, which a random-weight net of this depth amplifies little)."""
    m = _tiny_animator()
    h = _fp16_copy(m, _tiny_animator)
    g = torch.Generator().manual_seed(1)
    audio = torch.randn(1, 24000, generator=g) * 0.1
    template = torch.randn(1, 30, 3, generator=g)
    a = m.generate(audio, torch.tensor([24000]), template, torch.tensor([1])) - template[:, None]
    b = h.generate(audio, torch.tensor([24000]), template, torch.tensor([1])) - template[:, None]
    motion = float(a.abs().max())
    assert motion > 1e-3
    assert float((a - b).abs().max()) < 1e-3 * motion
    assert float((a - b).abs().max()) > 0  # the weights really were rounded


def test_fp16_weights_reproduce_fp32_expert_outputs():
    """The AV expert's CTC log-probabilities move by less than 0.02 nats (tolerance), and greedy
    CTC reads the same tokens."""
    def factory():
        torch.manual_seed(0)
        return build_expert(ExpertConfig(modality="av", odim=12, adim=16, aheads=2, eunits=32, elayers=1, aux_adim=16,
                                         aux_aheads=2, aux_eunits=32, aux_elayers=1, cnn_module_kernel=3,
                                         aux_cnn_module_kernel=3, fusion_hdim=32, ddim=16, dheads=2, dunits=32,
                                         dlayers=1, visual_widths=(4, 4, 8, 8), audio_widths=(4, 4, 8, 8),
                                         audio_frontend="mel")).eval()
    m = factory()
    h = _fp16_copy(m, factory)
    g = torch.Generator().manual_seed(2)
    video, audio = torch.randn(1, 20, 1, 16, 16, generator=g), torch.randn(1, 20 * 640, generator=g)
    args = (video, torch.tensor([20]), audio, torch.tensor([20 * 640]))
    with torch.no_grad():
        ka, kb = m.ctc_log_probs(m.encode(*args)), h.ctc_log_probs(h.encode(*args))  # (1, T, odim)
    assert float((ka - kb).abs().max()) < 0.02
    assert torch.equal(ka.argmax(-1), kb.argmax(-1))


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A manifest with one small shipped model in a temporary package folder."""
    root = tmp_path / "pretrained"
    folder = root / "tiny"
    folder.mkdir(parents=True)
    save_file({"w": torch.ones(3, dtype=torch.float16)}, str(folder / "model.safetensors"))
    (folder / "meta.json").write_text(json.dumps({"epoch": 1, "step": 1, "config": {}}))
    files = {p.name: {"sha256": P.sha256_file(p), "bytes": p.stat().st_size} for p in folder.iterdir()}
    manifest = {"models": {"tiny": {"kind": "animator", "summary": "a test", "files": files,
                                    "test_metrics": {"lve": 1.5e-5}}}, "aliases": {"default": "tiny"}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(P, "ROOT", root)
    monkeypatch.setattr(P, "MANIFEST", root / "manifest.json")
    P._VERIFIED.clear()
    yield folder
    P._VERIFIED.clear()


def test_names_resolve_and_are_checked(shipped, tmp_path):
    assert P.resolve("default") == shipped and P.resolve("tiny", kind="animator") == shipped
    assert P.resolve(tmp_path) == tmp_path  # an existing path is returned as it is
    with pytest.raises(BadInputError, match="is a animator, not a reader"):
        P.resolve("tiny", kind="reader")
    with pytest.raises(MissingFileError, match="shipped: default, tiny"):
        P.resolve("nonesuch")
    P._VERIFIED.clear()
    data = bytearray((shipped / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (shipped / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(BadInputError, match="model.safetensors is corrupt"):
        P.resolve("default")
    (shipped / "model.safetensors").unlink()
    with pytest.raises(MissingFileError, match="is missing"):
        P.resolve("default")


def test_models_command_and_a_corrupt_file_give_one_line(shipped, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "| tiny (= default) | animator | a test |" in out and "lve 1.5e-05" in out
    (shipped / "meta.json").write_text("{}")  # size and sha256 change
    assert main(["animate", "nothing.wav", "-o", str(shipped.parent / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1  # the missing input is named first, before the model is touched
    assert main(["evaluate", "--pred", str(shipped), "--data", str(shipped), "--reader", "default",
                 "-o", str(shipped.parent / "r.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
