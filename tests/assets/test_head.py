"""The embedded head asset: loader, regions, orientation, cross-check with the shared extraction."""

import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from avguide.assets.arkit import ARKIT_INDEX, ARKIT_NAMES
from avguide.assets.head import REGION_NAMES, load_head
from avguide.errors import BadInputError, MissingFileError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def head():
    return load_head()


def test_shapes_dtypes_ranges(head):
    v = head.num_vertices
    assert head.vertices.shape == (v, 3) and head.vertices.dtype == np.float32
    assert head.faces.dtype == np.int64 and head.faces.shape[1] == 3
    assert head.faces.min() == 0 and head.faces.max() == v - 1
    assert head.blendshapes.shape == (52, v, 3) and head.blendshapes.dtype == np.float32
    assert head.blendshape_names == ARKIT_NAMES
    k = len(head.identity_names)
    assert 30 <= k <= 60 and head.identity_targets.shape == (k, v, 3)
    assert len(set(head.identity_names)) == k
    # metres: a head is ~0.18 m wide and ~0.24 m tall (neck cut to crown)
    ext = head.vertices.max(0) - head.vertices.min(0)
    assert 0.15 < ext[0] < 0.2 and 0.2 < ext[1] < 0.3
    # every Face Unit and identity target moves something, by < 5 cm
    for deltas in (head.blendshapes, head.identity_targets):
        mag = np.linalg.norm(deltas, axis=2).max(axis=1)
        assert (mag > 1e-3).all() and (mag < 0.05).all()
    assert head.part_names == ("skin", "lips", "teeth", "tongue", "eyes", "cavity")
    assert head.vertex_part.shape == (v,) and set(np.unique(head.vertex_part)) == set(range(6))
    assert not head.vertices.flags.writeable


def test_loader_is_cached(head):
    assert load_head() is head


def test_regions_consistent(head):
    r = head.regions
    assert set(r) == set(REGION_NAMES)
    for name, idx in r.items():
        assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0), name  # sorted, unique
    np.testing.assert_array_equal(r["lips"], np.union1d(r["upper_lip"], r["lower_lip"]))
    # the two lips share only the corner vertices
    assert len(np.intersect1d(r["upper_lip"], r["lower_lip"])) <= 12
    disjoint = ["lips", "upper_face", "eyes", "teeth", "tongue", "mouth_cavity"]
    for i, a in enumerate(disjoint):
        for b in disjoint[i + 1:]:
            assert len(np.intersect1d(r[a], r[b])) == 0, (a, b)
    part = np.array(head.part_names)[head.vertex_part]
    for region, label in (("eyes", "eyes"), ("teeth", "teeth"), ("tongue", "tongue"),
                          ("mouth_cavity", "cavity")):
        assert (part[r[region]] == label).all(), region
    assert set(np.flatnonzero(part == "lips")) <= set(r["lips"])
    v = head.vertices
    # geometry sanity: upper lip above lower lip, upper face above the lips, cavity behind lips
    assert v[r["upper_lip"], 1].mean() > v[r["lower_lip"], 1].mean()
    assert v[r["upper_face"], 1].min() > v[r["lips"], 1].max()
    assert v[r["mouth_cavity"], 2].max() < v[r["lips"], 2].max()


def test_upper_face_not_driven_by_speech(head):
    speech = [i for i, n in enumerate(ARKIT_NAMES) if n.startswith(("jaw", "mouth"))]
    moved = np.linalg.norm(head.blendshapes[speech][:, head.regions["upper_face"]], axis=2)
    assert moved.max() < 1e-3
    blink = np.linalg.norm(head.blendshapes[ARKIT_INDEX["eyeBlinkLeft"]]
                           [head.regions["upper_face"]], axis=1)
    assert blink.max() > 5e-3  # but blinks and brows move it


def _signed_volume(v, f, origin):
    t = v[f] - origin  # (F, 3, 3)
    return np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0


def test_faces_consistently_oriented_outward(head):
    f = head.faces
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    # a consistently oriented manifold never uses a directed edge twice
    assert len(np.unique(directed, axis=0)) == len(directed)
    part = np.array(head.part_names)[head.vertex_part]
    skin_f = np.isin(part[f], ("skin", "lips", "cavity")).all(axis=1)
    # the skin is closed except for the neck cut; apex of the volume cone on the cut
    neck = np.flatnonzero(head.vertices[:, 1] < head.vertices[:, 1].min() + 0.02)
    origin = head.vertices[neck].mean(0)
    vol = _signed_volume(head.vertices.astype(np.float64), f[skin_f], origin)
    assert 2e-3 < vol < 6e-3  # positive (outward normals), a few litres
    for side in (1, -1):  # each eyeball is a closed, outward surface of ~12 cm^3
        eye = head.regions["eyes"][side * head.vertices[head.regions["eyes"], 0] > 0]
        ef = f[np.isin(f, eye).all(axis=1)]
        vol = _signed_volume(head.vertices.astype(np.float64), ef, head.vertices[eye].mean(0))
        assert 5e-6 < vol < 2e-5


def test_jaw_open_opens_and_mouth_close_closes(head):
    from avguide.synth.rig import lip_gaps
    b, v = head.blendshapes, head.vertices
    rest = lip_gaps(v, head)
    opened = lip_gaps(v + b[ARKIT_INDEX["jawOpen"]], head)
    closed = lip_gaps(v + b[ARKIT_INDEX["jawOpen"]] + b[ARKIT_INDEX["mouthClose"]], head)
    assert 0 < rest.max() < 1e-3 and opened[len(opened) // 2] > 0.03
    # lips back together (within 0.6 mm of rest, at most 0.5 mm overlap), jaw still dropped
    np.testing.assert_allclose(closed, rest, atol=7e-4)
    assert closed.min() > -5e-4


def test_cross_check_with_shared_extraction(head, shared_dir):
    ref_path = shared_dir / "assets" / "makehuman_head" / "mh_head_cc0.npz"
    if not ref_path.is_file():
        pytest.skip("shared mh_head_cc0.npz absent")
    ref = np.load(ref_path)
    np.testing.assert_array_equal(head.orig_index, ref["orig_index"])
    np.testing.assert_allclose(head.vertices, ref["vertices"] * 0.1, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(head.regions["upper_lip"], ref["upper_lip"])
    np.testing.assert_array_equal(head.regions["lower_lip"], ref["lower_lip"])
    for k, name in enumerate(ARKIT_NAMES):
        ours = head.blendshapes[k] * 10.0  # back to decimetres
        theirs = ref[f"bs_{name}"].astype(np.float32)
        # both rounded to float16 (at different scales): within fp16 relative precision
        np.testing.assert_allclose(ours, theirs, rtol=2e-3, atol=2e-6, err_msg=name)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(MissingFileError, match="not found"):
        load_head(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(BadInputError, match="bad.npz"):
        load_head(bad)
    partial = tmp_path / "partial.npz"
    np.savez(partial, vertices=np.zeros((3, 3), np.float32))
    with pytest.raises(BadInputError, match="lacks arrays"):
        load_head(partial)
    # a file with every array but inconsistent shapes
    with np.load(REPO / "avguide" / "assets" / "head.npz") as z:
        d = {k: z[k] for k in z.files}
    d["faces"] = d["faces"] + len(d["vertices"])
    broken = tmp_path / "broken.npz"
    np.savez(broken, **d)
    with pytest.raises(BadInputError, match="faces"):
        load_head(broken)


def test_npz_writer_is_deterministic():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from build_head_asset import npz_bytes
    finally:
        sys.path.pop(0)
    arrays = {"b": np.arange(6, dtype=np.int32).reshape(2, 3), "a": np.array(["x", "yz"])}
    one = npz_bytes(arrays)
    assert one == npz_bytes(dict(reversed(arrays.items())))
    with zipfile.ZipFile(__import__("io").BytesIO(one)) as zf:
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
    import io
    with np.load(io.BytesIO(one)) as z:
        np.testing.assert_array_equal(z["b"], arrays["b"])
        assert list(z["a"]) == ["x", "yz"]
