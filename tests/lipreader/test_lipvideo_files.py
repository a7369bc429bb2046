"""The lip-video files read through the boundary layer (issue 21): render assets and the render
cache. A damaged file is one error naming it (assets) or is rendered again (cache); arrays handed
between our own functions that are wrong are programming errors (ValueError, not a user error)."""

import numpy as np
import pytest
import torch

from avguide.assets.arkit import ARKIT_INDEX
from avguide.assets.head import load_head
from avguide.data.samples import Sample
from avguide.errors import AvguideError, BadInputError, MissingFileError
from avguide.lipreader.lipvideo import load_assets, make_assets, rest_shapes, save_assets
from avguide.lipreader.render_cache import RenderCache
from avguide.render.shading import head_albedo


@pytest.fixture(scope="module")
def head():
    h = load_head()
    return h, make_assets(h.faces, h.regions["lips"], head_albedo(h).numpy())


def _sample(h, n_frames=9):
    jaw = np.asarray(h.blendshapes[ARKIT_INDEX["jawOpen"]])
    w = 0.5 + 0.5 * np.sin(np.arange(n_frames) / 3.0)
    verts = (np.asarray(h.vertices)[None] + w[:, None, None] * jaw[None]).astype(np.float32)
    return Sample(name="S_sentence01", subject="S", subject_index=0, audio=np.zeros(16000, np.float32),
                  vertices=verts, template=np.asarray(h.vertices, np.float32), fps=30.0, text="HI")


def test_assets_round_trip(head, tmp_path):
    _, assets = head
    save_assets(tmp_path / "a.npz", assets)
    back = load_assets(tmp_path / "a.npz")
    assert torch.equal(back.faces, assets.faces) and torch.equal(back.lips, assets.lips)


@pytest.mark.parametrize("case, words", [
    ("missing", "not found"),
    ("directory", "is a directory"),
    ("empty", "empty file"),
    ("not_zip", "not a .npz"),
    ("truncated", "truncated or corrupt"),
    ("no_lips", "lacks the array(s) lips"),
    ("face_out_of_range", "faces index vertices outside"),
    ("albedo_nan", "albedo must be (V, 3) floats in [0, 1]"),
    ("lips_float", "lips must be a non-empty (Lv,) integer array"),
    ("pickled", "pickled Python objects"),
])
def test_damaged_assets_file_is_one_error_naming_it(case, words, head, tmp_path):
    _, assets = head
    p = tmp_path / "render_assets.npz"
    arrays = {"faces": assets.faces.numpy(), "lips": assets.lips.numpy(), "albedo": assets.albedo.numpy()}
    if case == "directory":
        p.mkdir()
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "not_zip":
        p.write_text("faces, lips, albedo\n")
    elif case == "truncated":
        save_assets(p, assets)
        p.write_bytes(p.read_bytes()[:200])
    elif case == "pickled":
        np.savez(p, faces=np.array([{"x": 1}], dtype=object), lips=arrays["lips"], albedo=arrays["albedo"])
    elif case != "missing":
        if case == "no_lips":
            del arrays["lips"]
        elif case == "face_out_of_range":
            arrays["faces"] = arrays["faces"].copy()
            arrays["faces"][0, 0] = len(arrays["albedo"])
        elif case == "albedo_nan":
            arrays["albedo"] = arrays["albedo"].copy()
            arrays["albedo"][3] = np.nan
        elif case == "lips_float":
            arrays["lips"] = arrays["lips"].astype(np.float32)
        np.savez(p, **arrays)
    with pytest.raises(MissingFileError if case == "missing" else BadInputError) as e:
        load_assets(p)
    msg = str(e.value)
    assert msg.startswith(str(p)) and words in msg and "\n" not in msg, msg


def test_wrong_arrays_from_our_own_code_are_programming_errors(head):
    h, assets = head
    with pytest.raises(ValueError) as e:
        make_assets(h.faces, np.array([len(h.vertices)]), head_albedo(h).numpy())
    assert not isinstance(e.value, AvguideError)
    verts = torch.zeros(1, 3, 4, 3)
    with pytest.raises(ValueError) as e:
        rest_shapes(verts, torch.tensor([3]), "sideways")
    assert not isinstance(e.value, AvguideError)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "wrong_shape", "wrong_dtype", "directory"])
def test_damaged_cache_entry_is_rendered_again(damage, head, tmp_path):
    h, assets = head
    sample = _sample(h)
    video = RenderCache(assets, 16, "template", tmp_path).get(sample)
    (entry,) = list(tmp_path.rglob("*.npy"))
    if damage == "truncated":
        entry.write_bytes(entry.read_bytes()[:100])
    elif damage == "garbage":
        entry.write_bytes(b"\x00" * 64)
    elif damage == "wrong_shape":
        np.save(entry, video[:-1])
    elif damage == "wrong_dtype":
        np.save(entry, video.astype(np.float32))
    else:
        entry.unlink()
        entry.mkdir()
    cache = RenderCache(assets, 16, "template", tmp_path)
    if damage == "directory":  # a folder in the way of the entry cannot be replaced: named, not hidden
        with pytest.raises(BadInputError, match=str(entry)):
            cache.get(sample)
        return
    np.testing.assert_array_equal(cache.get(sample), video)
    assert (cache.rendered, cache.hits) == (1, 0)
    np.testing.assert_array_equal(np.load(entry), video)  # replaced by the good video


def test_cache_directory_checked_before_any_render(head, tmp_path):
    _, assets = head
    (tmp_path / "cache").write_text("a file")
    with pytest.raises(BadInputError, match="render cache .*cache"):
        RenderCache(assets, 16, "template", tmp_path / "cache")
