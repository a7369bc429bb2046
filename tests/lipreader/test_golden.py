"""The expert against Auto-AVSR's own code: state-dict layout and numerics (golden file)."""

import pytest
import torch

from avguide.lipreader.beam_search import beam_search
from avguide.lipreader.config import avsr_base, config_from_auto_avsr, vsr_base
from avguide.lipreader.model import build_avsr, build_expert, build_vsr

REF = "reference/auto_avsr"


def _read_tsv(path):
    rows = {}
    for line in path.read_text().splitlines():
        key, shape, dtype = line.split("\t")
        rows[key] = (shape, dtype)
    return rows


@pytest.fixture(scope="module")
def golden(shared_dir):
    return torch.load(shared_dir / REF / "auto_avsr_tiny_golden.pt", weights_only=True)


def _model(golden, prefix, modality):
    cfg = config_from_auto_avsr(golden[f"{prefix}_config"], odim=41, modality=modality)
    model = build_expert(cfg)
    state = {k: v.float() if v.is_floating_point() else v
             for k, v in golden[f"{prefix}_state_dict"].items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("name, preset, builder, n_params", [
    ("avsr", avsr_base, build_avsr, 443_977_138),
    ("vsr", vsr_base, build_vsr, 250_383_410),
])
def test_base_state_dict_layout(shared_dir, name, preset, builder, n_params):
    with torch.device("meta"):
        model = builder(preset())
    ours = {k: (str(tuple(v.shape)), str(v.dtype).removeprefix("torch."))
            for k, v in model.state_dict().items()}
    ref = _read_tsv(shared_dir / REF / f"{name}_base_state_dict.tsv")
    assert sorted(set(ours) - set(ref)) == [] and sorted(set(ref) - set(ours)) == []
    assert {k: v for k, v in ours.items() if v != ref[k]} == {}
    assert list(ours) == list(ref)  # same order too
    assert sum(p.numel() for p in model.parameters()) == n_params


def test_av_golden_outputs(golden):
    model = _model(golden, "av", "av")
    with torch.no_grad():
        enc = model.encode(golden["video"].float(), golden["video_lengths"],
                           golden["audio"].float(), golden["audio_lengths"])
        log_probs = model.ctc_log_probs(enc)
        losses = model.losses(enc, golden["label"])
    assert _rel(enc.video_features, golden["av_video_feat"]) < 1e-4
    assert _rel(enc.audio_features, golden["av_audio_feat"]) < 1e-4
    assert _rel(enc.features, golden["av_fused"]) < 1e-4
    assert _rel(log_probs, golden["av_ctc_log_probs"]) < 1e-4
    for key in ("loss", "loss_ctc", "loss_att"):
        assert _rel(losses[key], golden[f"av_{key}"]) < 1e-4, key


def test_vsr_golden_outputs(golden):
    model = _model(golden, "vsr", "v")
    with torch.no_grad():
        enc = model.encode(golden["video"].float(), golden["video_lengths"])
        log_probs = model.ctc_log_probs(enc)
        losses = model(golden["video"].float(), golden["video_lengths"], None, None,
                       golden["label"])
    assert enc.audio_features is None
    assert _rel(enc.video_features, golden["vsr_video_feat"]) < 1e-4
    assert _rel(log_probs, golden["vsr_ctc_log_probs"]) < 1e-4
    for key in ("loss", "loss_ctc", "loss_att"):
        assert _rel(losses[key], golden[f"vsr_{key}"]) < 1e-4, key


@pytest.mark.parametrize("ctc_weight, beam", [(0.1, 5), (0.3, 4), (1.0, 3)])
def test_beam_search_golden(golden, ctc_weight, beam):
    model = _model(golden, "av", "av")
    fused, lengths = golden["av_fused"], golden["video_lengths"]
    with torch.no_grad():
        log_probs = model.ctc(fused)
    batched = beam_search(model.decoder, fused, lengths, log_probs, 40, 40, beam, ctc_weight)
    for i in range(2):
        n = int(lengths[i])
        alone = beam_search(model.decoder, fused[i:i + 1, :n], lengths[i:i + 1],
                            log_probs[i:i + 1, :n], 40, 40, beam, ctc_weight)[0]
        key = f"beam_ctcw{ctc_weight}_beam{beam}_sample{i}"
        want_seq, want_score = golden[f"{key}_yseq"].tolist(), golden[f"{key}_score"].item()
        for hyp in (alone, batched[i]):
            assert hyp.yseq == want_seq
            assert hyp.score == pytest.approx(want_score, rel=1e-4)


def test_unsupported_auto_avsr_option_is_reported(golden):
    from avguide.errors import BadInputError

    args = dict(golden["av_config"], zero_triu=True, bogus=1)
    with pytest.raises(BadInputError, match="zero_triu.*bogus"):
        config_from_auto_avsr(args, odim=41, modality="av")
