"""Lip video at any crop size, the GT render cache, and the evaluation reader."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avguide.assets.arkit import ARKIT_INDEX
from avguide.assets.head import load_head
from avguide.data.batching import collate
from avguide.data.samples import Sample
from avguide.errors import BadInputError
from avguide.lipreader.config import asr_cpu_small, vsr_cpu_small
from avguide.lipreader.lipvideo import (assets_from_dataset, dequantize, gray_to_video, lip_cameras, lip_gray,
                                        make_assets, quantize, render_size, rest_shapes, save_assets)
from avguide.lipreader.model import Encoded, build_expert
from avguide.lipreader.reader import (LipReader, TrainedExpert, expert_from_meta, expert_meta, load_reader,
                                      load_trained_expert)
from avguide.lipreader.render_cache import RenderCache
from avguide.lipreader.tokenizers import CharTokenizer
from avguide.render import expert_input, lip_camera
from avguide.render.shading import head_albedo
from avguide.train.run import Run


@pytest.fixture(scope="module")
def head():
    h = load_head()
    assets = make_assets(h.faces, h.regions["lips"], head_albedo(h).numpy())
    return h, assets


def _talking(h, n_frames, fps=30.0, seed=0):
    """(T, V, 3) float32: the head opening and closing its jaw."""
    rng = np.random.default_rng(seed)
    w = 0.5 + 0.5 * np.sin(np.arange(n_frames) / fps * 2 * np.pi * rng.uniform(2, 4))
    jaw = np.asarray(h.blendshapes[ARKIT_INDEX["jawOpen"]])
    return (np.asarray(h.vertices)[None] + w[:, None, None] * jaw[None]).astype(np.float32)


def _sample(h, name, verts, fps=30.0):
    return Sample(name=name, subject="S", subject_index=0, audio=np.zeros(16000, np.float32), vertices=verts,
                  template=np.asarray(h.vertices, np.float32), fps=fps, text="HI")


def test_render_size_and_crop_88_equals_render_expert_input(head):
    h, assets = head
    assert [render_size(c) for c in (88, 44, 64)] == [96, 48, 70]
    verts = torch.from_numpy(_talking(h, 4))[None]  # (1, 4, V, 3)
    lengths = torch.tensor([4])
    tmpl = torch.from_numpy(np.array(h.vertices, np.float32))[None]
    cam = lip_cameras(tmpl, assets, 88)
    gray, len25 = lip_gray(verts, lengths, 30.0, assets, cam, 88)
    ref, ref_len = expert_input(verts, lengths, 30.0, assets.faces, lip_camera(tmpl, assets.lips), assets.albedo,
                                neighbors=assets.neighbors)
    assert len25.tolist() == ref_len.tolist() == [3]
    torch.testing.assert_close(gray_to_video(gray, len25), ref, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_lip_gray_compiled_equals_eager(head):
    """compile=True reaches the renderer from the training path: same crops and gradients."""
    h, assets = head
    verts = torch.from_numpy(_talking(h, 6))[None].repeat(2, 1, 1, 1)  # (2, 6, V, 3)
    lengths = torch.tensor([6, 4])
    tmpl = torch.from_numpy(np.array(h.vertices, np.float32))[None].repeat(2, 1, 1)
    cam = lip_cameras(tmpl, assets, 44)
    out = {}
    for compiled in (False, True):
        v = verts.clone().requires_grad_(True)
        gray, len25 = lip_gray(v, lengths, 30.0, assets, cam, 44, workers=2, chunk=2, compile=compiled)
        (gray * torch.linspace(-1, 1, 44)).sum().backward()
        out[compiled] = gray.detach(), v.grad
    torch.testing.assert_close(out[True][0], out[False][0], rtol=0, atol=1e-5)
    scale = float(out[False][1].abs().max())  # ~1e3: pixel sums cancel, so compare to the largest
    assert scale > 0
    torch.testing.assert_close(out[True][1], out[False][1], rtol=0, atol=1e-4 * scale)


def test_rest_shapes_rules():
    verts = torch.arange(2 * 3 * 2 * 3, dtype=torch.float32).reshape(2, 3, 2, 3)
    lengths = torch.tensor([3, 1])
    mean = rest_shapes(verts, lengths, "sequence_mean")
    torch.testing.assert_close(mean[0], verts[0].mean(0))
    torch.testing.assert_close(mean[1], verts[1, 0])  # padding ignored
    tmpl = torch.randn(2, 2, 3, requires_grad=True)  # not the vertices' mean: the rule ignores the motion
    rest = rest_shapes(verts, lengths, "template", tmpl)
    assert torch.equal(rest, tmpl.detach()) and not rest.requires_grad  # the template itself, no gradient
    with pytest.raises(ValueError, match="needs the subjects' templates"):
        rest_shapes(verts, lengths, "template")


def test_cache_equals_fresh_render_and_is_reused(head, tmp_path):
    h, assets = head
    verts = _talking(h, 12)
    sample = _sample(h, "S_sentence01", verts)
    cache = RenderCache(assets, 16, "template", tmp_path)
    video = cache.get(sample)
    with torch.no_grad():  # fresh render: every face drawn, no cache
        tmpl = torch.from_numpy(sample.template.copy())[None]
        gray, _ = lip_gray(torch.from_numpy(verts)[None], torch.tensor([12]), 30.0, assets,
                           lip_cameras(tmpl, assets, 16), 16)
    fresh = quantize(gray[0])
    assert video.dtype == np.uint8 and video.shape == (10, 16, 16)
    np.testing.assert_array_equal(video, fresh)
    assert video.std() > 5  # an image, not a blank
    again = RenderCache(assets, 16, "template", tmp_path)  # new process, same directory
    np.testing.assert_array_equal(again.get(sample), video)
    assert (again.rendered, again.hits) == (0, 1) and cache.rendered == 1
    moved = _sample(h, "S_sentence01", verts + np.float32(0.002))  # same name, new content
    assert not np.array_equal(again.get(moved), video) and again.rendered == 1
    video_t, lengths = cache.video(collate([sample, _sample(h, "S_sentence02", verts[:6])]))
    assert video_t.shape == (2, 10, 1, 16, 16) and lengths.tolist() == [10, 5]
    assert bool((video_t[1, 5:] == 0).all())  # padding is exactly 0 after normalisation
    assert cache.rendered == 2 and cache.hits == 1  # the batch's first recording came from the cache
    torch.testing.assert_close(video_t[0, :, 0], (torch.from_numpy(video).float() / 255 - 0.421) / 0.165)


class _FakeExpert(torch.nn.Module):
    """Emits 'A' on even frames and blank on odd ones: the text reveals each video's length."""

    def __init__(self):
        super().__init__()
        self.cfg = vsr_cpu_small()
        self.blank = 0
        self.seen = []

    def encode(self, video, lengths):
        self.seen.append((tuple(video.shape), lengths.tolist()))
        mask = (torch.arange(video.shape[1])[None] < lengths[:, None]).unsqueeze(1)
        return Encoded(video.mean((2, 3, 4))[..., None], lengths, mask, video, None)

    def ctc_log_probs(self, enc):
        b, t = enc.features.shape[:2]
        lp = torch.full((b, t, 30), -10.0)
        lp[:, 0::2, 1] = 0.0  # 'A'
        lp[:, 1::2, 0] = 0.0  # blank
        return lp


def test_reader_on_fake_model(head):
    h, assets = head
    fake = _FakeExpert()
    reader = LipReader(TrainedExpert(fake, CharTokenizer(), 16, "sequence_mean", assets, {}, None), batch=2)
    seqs = [_talking(h, n, seed=n) for n in (30, 12, 7)]  # 30 fps -> 25, 10, 6 frames at 25 fps
    assert reader(seqs, 30.0) == ["A" * 13, "A" * 5, "A" * 3]
    assert fake.seen == [((2, 25, 1, 16, 16), [25, 10]), ((1, 6, 1, 16, 16), [6])]
    with pytest.raises(BadInputError, match=r"expected \(T, 4742, 3\)"):
        reader([np.zeros((5, 10, 3), np.float32)], 30.0)
    with pytest.raises(BadInputError, match="fps must be > 0"):
        reader(seqs, 0.0)


def test_reader_camera_follows_the_sequence_mean(head):
    """A static sequence is read exactly like its own template; translating it changes nothing."""
    h, assets = head
    reader = LipReader(TrainedExpert(_FakeExpert(), CharTokenizer(), 16, "sequence_mean", assets, {}, None))
    verts = _talking(h, 9)
    a = reader.videos([verts], 30.0)[0]
    b = reader.videos([verts + np.float32([0.01, -0.02, 0.005])], 30.0)[0]
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_trained_expert_round_trip_and_batching(head, tmp_path):
    h, assets = head
    torch.manual_seed(0)
    cfg = dataclasses.replace(vsr_cpu_small(), adim=16, aheads=2, eunits=32, elayers=1, ddim=16, dheads=2,
                              dunits=32, dlayers=1, visual_widths=(4, 4, 8, 8), cnn_module_kernel=3)
    model = build_expert(cfg).eval()
    with Run(tmp_path, {"modality": "video"}) as run:
        run.save(model, {}, epoch=1, step=1, metrics={}, score=0.0, seconds=0.0,
                 extra=expert_meta(cfg, "char", 16, "sequence_mean"))
    save_assets(tmp_path / "render_assets.npz", assets)
    expert = load_trained_expert(tmp_path)
    assert expert.crop == 16 and torch.equal(expert.assets.faces, assets.faces)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(expert.model.state_dict()[k], v, rtol=0, atol=0)
    seqs = [_talking(h, n, seed=n) for n in (20, 11, 16)]
    reader = load_reader(tmp_path, batch=3)
    videos = reader.videos(seqs, 30.0)
    together, lengths = dequantize(videos)
    with torch.no_grad():  # the longest sequence has no padding: batching must not change it
        batched = expert.model.ctc_log_probs(expert.model.encode(together, lengths))
        alone = expert.model.ctc_log_probs(expert.model.encode(*dequantize(videos[:1])))
    torch.testing.assert_close(batched[0], alone[0], rtol=1e-4, atol=1e-4)
    texts = reader(seqs, 30.0)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert len(load_reader(tmp_path, decode="beam", beam_size=2)(seqs[:1], 30.0)) == 1
    pure = load_reader(tmp_path, decode="beam", beam_size=3, ctc_weight=1.0)(seqs, 30.0)
    assert load_reader(tmp_path, decode="beam", beam_size=3, ctc_weight=1.0, ctc_prune=1e-9)(seqs, 30.0) == pure


# meta.json of an audio-only stage-1 checkpoint (asr_cpu_small, character tokeniser) saved before the
# expert config said "video" / "audio": its expert settings name the modality "a"
OLD_META = Path(__file__).parent / "data" / "asr_meta_before_rename.json"


@pytest.mark.parametrize("old, new, preset", [("a", "audio", asr_cpu_small), ("v", "video", vsr_cpu_small)])
def test_checkpoints_saved_with_the_old_modality_names_load(old, new, preset):
    meta = json.loads(OLD_META.read_text())
    assert meta["expert"]["modality"] == "a" and meta["config"]["modality"] == "audio"
    meta["expert"]["modality"] = old
    model = expert_from_meta(meta)
    assert model.cfg == preset(30)  # today's name, and every other setting as saved
    assert model.cfg.modality == new
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in build_expert(preset(30)).state_dict().items()}


def test_reader_rejects_av_experts_and_bad_settings(head):
    h, assets = head
    fake = _FakeExpert()
    fake.cfg = dataclasses.replace(fake.cfg, modality="av")
    with pytest.raises(BadInputError, match="must be visual-only"):
        LipReader(TrainedExpert(fake, CharTokenizer(), 16, "template", assets, {}, "x"))
    with pytest.raises(BadInputError, match="decode must be greedy or beam"):
        LipReader(TrainedExpert(_FakeExpert(), CharTokenizer(), 16, "template", assets, {}, "x"), decode="best")
    with pytest.raises(BadInputError, match="ctc_prune in"):
        LipReader(TrainedExpert(_FakeExpert(), CharTokenizer(), 16, "template", assets, {}, "x"), decode="beam",
                  ctc_prune=2.0)
    with pytest.raises(BadInputError, match="length_bonus finite; got .* inf"):
        LipReader(TrainedExpert(_FakeExpert(), CharTokenizer(), 16, "template", assets, {}, "x"), decode="beam",
                  length_bonus=float("inf"))


def test_assets_from_dataset_needs_faces_and_lips(tmp_path):
    from types import SimpleNamespace

    from avguide.errors import MissingFileError

    with pytest.raises(MissingFileError, match="faces.npy"):
        assets_from_dataset(SimpleNamespace(root=tmp_path, faces=None, regions={}))
    idx = SimpleNamespace(root=tmp_path, faces=np.array([[0, 1, 2]]), regions={"lips": np.array([0, 1])},
                          n_vertices=3)
    a = assets_from_dataset(idx)
    assert a.albedo.shape == (3, 3) and not torch.equal(a.albedo[0], a.albedo[2])  # lips darker than skin
