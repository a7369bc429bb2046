"""Streamed animation equals offline generation, for both animators, with constant memory."""

import numpy as np
import pytest
import torch

from avguide.animators import build_animator, codetalker_tiny, faceformer_tiny
from avguide.animators.stream import AnimationStream, affine_readout, animate_in_chunks, can_stream
from avguide.errors import BadInputError

V, S = 30, 3


def _streaming(cfg):
    cfg.audio.lookahead, cfg.context = 2, 12
    if cfg.kind == "codetalker":
        cfg.vq.context = 9
    return cfg


def _model(kind):
    torch.manual_seed(0)
    cfg = _streaming(faceformer_tiny() if kind == "faceformer" else codetalker_tiny())
    m = build_animator(cfg, V, S).eval()
    if kind == "faceformer":
        torch.nn.init.normal_(m.vertice_map_r.weight, std=0.2)
        torch.nn.init.normal_(m.vertice_map_r.bias, std=0.2)
    else:
        torch.nn.init.normal_(m.feat_map.weight, std=0.3)
        torch.nn.init.normal_(m.vqvae.quantizer.codebook, std=0.3)
    return m


@pytest.mark.parametrize("kind", ["faceformer", "codetalker"])
def test_streamed_frames_equal_offline_generation(kind):
    m = _model(kind)
    g = torch.Generator().manual_seed(1)
    audio = torch.randn(37_000, generator=g) * 0.1  # 2.3 s: longer than both attention windows
    template = torch.randn(V, 3, generator=g)
    offline = m.generate(audio[None], torch.tensor([len(audio)]), template[None], torch.tensor([1]))[0]
    rng = np.random.default_rng(0)
    stream, parts, pos = AnimationStream(m, template, 1), [], 0
    while pos < len(audio):
        k = int(rng.integers(100, 4000))
        parts.append(stream.push(audio[pos: pos + k]))
        pos += k
    parts.append(stream.finish())
    streamed = torch.cat(parts)
    assert streamed.shape == offline.shape
    assert (streamed - template).abs().max() > 0.1  # the motion is not trivial
    assert (streamed - offline).abs().max() < 1e-4
    blocks = list(animate_in_chunks(m, audio.numpy(), template.numpy(), 1, chunk_s=0.5))
    assert np.abs(np.concatenate(blocks) - offline.numpy()).max() < 1e-4


@pytest.mark.parametrize("kind", ["faceformer", "codetalker"])
def test_decoder_outputs_read_out_to_the_streamed_frames(kind):
    """``hidden=True`` gives each frame's decoder output (CodeTalker: its VQ decoder's, before the
    last layer); the affine readout of it is the frame, and the frames equal ``model.generate``."""
    m = _model(kind)
    if kind == "codetalker":  # the readout scales by the codec's motion scale (1 at initialisation)
        m.vqvae.motion_scale.fill_(0.3)
    g = torch.Generator().manual_seed(2)
    audio, template = torch.randn(20_000, generator=g) * 0.1, torch.randn(V, 3, generator=g)
    meshes, hidden = AnimationStream(m, template, 1), AnimationStream(m, template, 1)
    got_v = [meshes.push(audio[i: i + 1500]) for i in range(0, len(audio), 1500)] + [meshes.finish()]
    got_h = [hidden.push(audio[i: i + 1500], hidden=True) for i in range(0, len(audio), 1500)] + \
        [hidden.finish(hidden=True)]
    assert [len(v) for v in got_v] == [len(h) for h in got_h]
    w, b = affine_readout(m)
    h = torch.cat(got_h)  # (T, D)
    width = m.cfg.feature_dim if kind == "faceformer" else m.cfg.vq.hidden
    assert h.shape == (len(torch.cat(got_v)), width)
    assert ((h @ w.T + b).view(-1, V, 3) + template - torch.cat(got_v)).abs().max() < 1e-5
    with torch.no_grad():
        offline = m.generate(audio[None], torch.tensor([len(audio)]), template[None], torch.tensor([1]))[0]
    assert ((h @ w.T + b).view(-1, V, 3) + template - offline).abs().max() < 1e-4


def test_stream_memory_is_bounded():
    m = _model("faceformer")
    stream = AnimationStream(m, torch.zeros(V, 3), 0)
    chunk = torch.randn(1600) * 0.1
    sizes = []
    for i in range(300):  # 30 s
        stream.push(chunk)
        if i in (100, 299):
            sizes.append((len(stream.features.samples), len(stream.features.mel), len(stream.features.feats),
                          stream.decoding.stepper.caches[0].k.shape[2]))
    assert sizes[0] == sizes[1]


def test_non_streaming_model_is_refused():
    torch.manual_seed(0)
    m = build_animator(faceformer_tiny(), V, S).eval()
    assert not can_stream(m)
    with pytest.raises(BadInputError, match="cannot stream"):
        AnimationStream(m, torch.zeros(V, 3), 0)
