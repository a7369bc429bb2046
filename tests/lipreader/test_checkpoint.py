"""Checkpoint import: raw and Lightning-wrapped state dicts, clear errors for wrong files."""

import pytest
import torch

from avguide.errors import BadInputError, MissingFileError
from avguide.lipreader.checkpoint import expert_from_auto_avsr, load_auto_avsr_checkpoint
from avguide.lipreader.config import ExpertConfig
from avguide.lipreader.model import build_expert


def _tiny(modality="av", adim=32):
    return ExpertConfig(modality=modality, odim=12, adim=adim, aheads=2, eunits=48, elayers=1,
                        cnn_module_kernel=3, aux_adim=adim, aux_aheads=2, aux_eunits=48,
                        aux_elayers=1, aux_cnn_module_kernel=3, fusion_hdim=40, ddim=adim,
                        dheads=2, dunits=48, dlayers=1, visual_widths=(4, 4, 8, 8),
                        audio_widths=(4, 4, 8, 8))


@pytest.mark.parametrize("wrap", ["raw", "lightning", "ddp"])
def test_load_roundtrip(tmp_path, wrap):
    torch.manual_seed(0)
    src = build_expert(_tiny())
    state = src.state_dict()
    if wrap == "lightning":
        state = {"state_dict": {**{f"model.{k}": v for k, v in state.items()},
                                "beam_search.weights": torch.zeros(1)}, "epoch": 3}
    elif wrap == "ddp":
        state = {f"module.{k}": v for k, v in state.items()}
    torch.save(state, tmp_path / "ckpt.pth")
    torch.manual_seed(1)
    dst = build_expert(_tiny())
    load_auto_avsr_checkpoint(tmp_path / "ckpt.pth", dst)
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert torch.equal(a, b), k


def test_wrong_modality_lists_missing_keys(tmp_path):
    torch.save(build_expert(_tiny("video")).state_dict(), tmp_path / "vsr.pth")
    with pytest.raises(BadInputError, match=r"missing keys: aux_encoder\..*in all\)"):
        load_auto_avsr_checkpoint(tmp_path / "vsr.pth", build_expert(_tiny("av")))
    torch.save(build_expert(_tiny("av")).state_dict(), tmp_path / "av.pth")
    with pytest.raises(BadInputError, match=r"unexpected keys: aux_encoder\."):
        load_auto_avsr_checkpoint(tmp_path / "av.pth", build_expert(_tiny("video")))


def test_shape_mismatch_is_reported(tmp_path):
    torch.save(build_expert(_tiny(adim=16)).state_dict(), tmp_path / "small.pth")
    with pytest.raises(BadInputError, match=r"shape mismatches: encoder\.embed\.0\.weight "
                                            r"\(16, 8\) vs model \(32, 8\)"):
        load_auto_avsr_checkpoint(tmp_path / "small.pth", build_expert(_tiny(adim=32)))


@pytest.mark.parametrize("modality", ["video", "v"])  # the import also takes the short name
def test_expert_from_auto_avsr_rejects_a_tiny_file_without_building(tmp_path, modality):
    torch.save(build_expert(_tiny("video")).state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(BadInputError, match=r"\(video, adim 768.*shape mismatches"):
        expert_from_auto_avsr(tmp_path / "tiny.pth", modality)
    with pytest.raises(BadInputError, match="modality: must be 'av' or 'video', got 'audio'"):
        expert_from_auto_avsr(tmp_path / "tiny.pth", "audio")


def test_unreadable_files(tmp_path):
    with pytest.raises(MissingFileError):
        load_auto_avsr_checkpoint(tmp_path / "nope.pth", build_expert(_tiny()))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(BadInputError, match="not a tensor-only torch checkpoint"):
        load_auto_avsr_checkpoint(tmp_path / "junk.pth", build_expert(_tiny()))
    torch.save({"epoch": 3}, tmp_path / "meta.pth")
    with pytest.raises(BadInputError, match="expected a state dict"):
        load_auto_avsr_checkpoint(tmp_path / "meta.pth", build_expert(_tiny()))
