import numpy as np
import pytest

from avguide.data.meshfile import read_mesh
from avguide.errors import BadInputError, MissingFileError

V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)


def test_obj_quads_are_fanned(tmp_path):
    p = tmp_path / "m.obj"
    p.write_text("# quad\n" + "".join(f"v {x} {y} {z}\n" for x, y, z in V) + "vn 0 0 1\nf 1//1 2//1 3//1 4//1\n")
    v, f = read_mesh(p)
    np.testing.assert_array_equal(v, V)
    np.testing.assert_array_equal(f, [[0, 1, 2], [0, 2, 3]])


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_ply(tmp_path, fmt):
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    head = (f"ply\nformat {fmt} 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
            "property float z\nelement face 2\nproperty list uchar int vertex_indices\nend_header\n")
    if fmt == "ascii":
        body = "".join(f"{x} {y} {z}\n" for x, y, z in V) + "".join(f"3 {a} {b} {c}\n" for a, b, c in faces)
        data = (head + body).encode()
    else:
        o = "<" if "little" in fmt else ">"
        body = V.astype(o + "f4").tobytes()
        for tri in faces:
            body += np.uint8(3).tobytes() + tri.astype(o + "i4").tobytes()
        data = head.encode() + body
    p = tmp_path / "m.ply"
    p.write_bytes(data)
    v, f = read_mesh(p)
    np.testing.assert_array_equal(v, V)
    np.testing.assert_array_equal(f, faces)


def test_bad_meshes(tmp_path):
    with pytest.raises(MissingFileError):
        read_mesh(tmp_path / "none.obj")
    (tmp_path / "m.stl").write_text("solid")
    with pytest.raises(BadInputError, match="unknown mesh format"):
        read_mesh(tmp_path / "m.stl")
    (tmp_path / "o.obj").write_text("v 0 0 0\nf 1 2 3\n")
    with pytest.raises(BadInputError, match="out of range"):
        read_mesh(tmp_path / "o.obj")
    (tmp_path / "p.ply").write_text("not a ply")
    with pytest.raises(BadInputError, match="cannot parse"):
        read_mesh(tmp_path / "p.ply")
