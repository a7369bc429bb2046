"""write_obj_sequence: files per frame, read back and compared, input checks."""

import numpy as np
import pytest
import torch

from avguide.errors import BadInputError
from avguide.export import write_obj_sequence


def _read_obj(path):
    """(V, 3) float64 vertices and (F, 3) 0-based faces of an OBJ, parsed here independently."""
    verts, faces = [], []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "v":
            verts.append([float(x) for x in parts[1:4]])
        elif parts and parts[0] == "f":
            faces.append([int(x.split("/")[0]) - 1 for x in parts[1:4]])
    return np.array(verts), np.array(faces)


def test_frames_read_back(tmp_path, head, subject):
    rng = np.random.default_rng(0)
    verts = subject[None] + np.einsum("tk,kvc->tvc", rng.uniform(0, 1, (3, 52)), head.blendshapes)
    paths = write_obj_sequence(tmp_path / "seq", verts, head.faces)
    assert [p.name for p in paths] == ["frame_00000.obj", "frame_00001.obj", "frame_00002.obj"]
    assert sorted(p.name for p in (tmp_path / "seq").iterdir()) == [p.name for p in paths]
    for t in (0, 2):
        v, f = _read_obj(paths[t])
        np.testing.assert_allclose(v, verts[t], rtol=0, atol=5.1e-7)   # 6 decimals of a metre
        np.testing.assert_array_equal(f, head.faces)


def test_layouts_torch_and_stem(tmp_path, head):
    verts = np.repeat(head.vertices[None], 2, axis=0)
    a = write_obj_sequence(tmp_path, torch.from_numpy(verts.reshape(2, -1)), head.faces, stem="take-1")
    assert [p.name for p in a] == ["take-1_00000.obj", "take-1_00001.obj"]
    np.testing.assert_allclose(_read_obj(a[1])[0], head.vertices, atol=5.1e-7)


def test_one_based_faces_on_a_tiny_mesh(tmp_path):
    v = np.array([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.5, -2.25]]])
    (path,) = write_obj_sequence(tmp_path, v, np.array([[0, 1, 2]]))
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    assert lines == ["v 0.000000 0.000000 0.000000", "v 1.000000 0.000000 0.000000",
                     "v 0.000000 1.500000 -2.250000", "f 1 2 3"]


@pytest.mark.parametrize("case, words", [
    ("face_high", ["faces", "outside"]),
    ("nan", ["vertices", "NaN", "frame 1"]),
    ("no_frames", ["T = 0"]),
    ("shape", ["vertices"]),
    ("stem", ["stem"]),
    ("out_file", ["out_dir", "not a directory"]),
])
def test_bad_input_is_one_clear_error(tmp_path, head, case, words):
    verts = np.repeat(head.vertices[None], 2, axis=0)
    faces = np.array(head.faces)
    out, kw = tmp_path / "seq", {}
    if case == "face_high":
        faces[0, 0] = len(head.vertices)
    elif case == "nan":
        verts[1, 5, 0] = np.nan
    elif case == "no_frames":
        verts = verts[:0]
    elif case == "shape":
        verts = verts[..., :2]
    elif case == "stem":
        kw["stem"] = "../evil"
    elif case == "out_file":
        out.write_text("x")
    with pytest.raises(ValueError) as e:
        write_obj_sequence(out, verts, faces, **kw)
    assert str(e.value).startswith("write_obj_sequence:")
    # arrays are the caller's (a programming error keeps its traceback); an output path is the user's
    assert isinstance(e.value, BadInputError) == (case == "out_file")
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    if case != "out_file":
        assert not out.exists() or not any(out.iterdir())
