"""write_glb: parsed back by pygltflib, accessors decoded with numpy, the morph animation
reproducing the rig's vertices, GLB framing checked byte by byte, and (when node and the npm
package gltf-validator are available) the official Khronos validator."""

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from avguide.assets.arkit import ARKIT_NAMES
from avguide.errors import BadInputError
from avguide.export import head_vertex_colors, write_glb

pygltflib = pytest.importorskip("pygltflib")

DTYPES = {5126: np.float32, 5125: np.uint32, 5123: np.uint16}
WIDTH = {"SCALAR": 1, "VEC3": 3}
FPS = 30.0


@pytest.fixture(scope="module")
def take(head, subject, tmp_path_factory):
    """A written glb of 12 frames of random weights, and what went in."""
    weights = np.random.default_rng(0).uniform(0, 1, size=(12, 52)).astype(np.float32)
    colors = head_vertex_colors(head)
    path = write_glb(tmp_path_factory.mktemp("glb") / "take.glb", subject, head.faces,
                     head.blendshapes, weights, FPS, vertex_colors=colors)
    return {"path": path, "weights": weights, "colors": colors,
            "gltf": pygltflib.GLTF2().load_binary(str(path))}


def _read(gltf, index):
    """Decode accessor ``index`` with numpy: (count, width) array of its component type."""
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    blob = gltf.binary_blob()
    start = view.byteOffset + (acc.byteOffset or 0)
    dtype = np.dtype(DTYPES[acc.componentType]).newbyteorder("<")
    n = acc.count * WIDTH[acc.type]
    assert start + n * dtype.itemsize <= view.byteOffset + view.byteLength
    assert view.byteStride is None
    return np.frombuffer(blob, dtype=dtype, count=n, offset=start).reshape(acc.count, WIDTH[acc.type])


def test_structure(take):
    g = take["gltf"]
    assert g.asset.version == "2.0" and g.scene == 0 and g.scenes[0].nodes == [0]
    assert g.nodes[0].mesh == 0 and len(g.meshes) == 1
    mesh = g.meshes[0]
    assert mesh.extras["targetNames"] == list(ARKIT_NAMES)
    assert mesh.weights == [0.0] * 52
    prim = mesh.primitives[0]
    assert prim.mode == 4 and len(prim.targets) == 52
    assert prim.attributes.POSITION is not None and prim.attributes.NORMAL is not None
    assert prim.attributes.COLOR_0 is not None
    anim = g.animations[0]
    assert len(anim.channels) == 1 and len(anim.samplers) == 1
    assert anim.channels[0].target.node == 0 and anim.channels[0].target.path == "weights"
    assert anim.samplers[0].interpolation == "LINEAR"
    for view in g.bufferViews:
        assert view.byteOffset % 4 == 0
    targets = {g.accessors[a].bufferView for a in (prim.attributes.POSITION, prim.indices)}
    assert {g.bufferViews[v].target for v in targets} == {34962, 34963}
    for a in (anim.samplers[0].input, anim.samplers[0].output):
        assert g.bufferViews[g.accessors[a].bufferView].target is None


def test_accessors_hold_the_mesh(take, head, subject):
    g = take["gltf"]
    prim = g.meshes[0].primitives[0]
    pos = _read(g, prim.attributes.POSITION)
    np.testing.assert_array_equal(pos, subject)
    acc = g.accessors[prim.attributes.POSITION]
    assert acc.min == pos.min(axis=0).tolist() and acc.max == pos.max(axis=0).tolist()
    np.testing.assert_array_equal(_read(g, prim.indices).reshape(-1, 3), head.faces)
    normals = _read(g, prim.attributes.NORMAL)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    # on the side of the counter-clockwise (outward) face normals, for every face
    v, f = subject.astype(np.float64), head.faces
    face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert np.all(np.einsum("fc,fc->f", face_n, normals[f].sum(axis=1)) > 0)
    np.testing.assert_array_equal(_read(g, prim.attributes.COLOR_0), take["colors"])
    for k, target in enumerate(prim.targets):
        delta = _read(g, target["POSITION"])
        np.testing.assert_array_equal(delta, head.blendshapes[k])
        acc = g.accessors[target["POSITION"]]
        assert acc.min == delta.min(axis=0).tolist() and acc.max == delta.max(axis=0).tolist()


def test_animation_reproduces_the_rig(take, head, subject, rig):
    """base + sum_k w_tk target_k from the decoded file equals the rig's vertices."""
    g = take["gltf"]
    prim = g.meshes[0].primitives[0]
    sampler = g.animations[0].samplers[0]
    times = _read(g, sampler.input)[:, 0]
    np.testing.assert_allclose(times, np.arange(12) / FPS, rtol=1e-7)
    acc = g.accessors[sampler.input]
    assert acc.min == [float(times[0])] and acc.max == [float(times[-1])]
    weights = _read(g, sampler.output).reshape(12, len(prim.targets))
    np.testing.assert_array_equal(weights, take["weights"])
    base = _read(g, prim.attributes.POSITION).astype(np.float64)
    deltas = np.stack([_read(g, t["POSITION"]) for t in prim.targets]).astype(np.float64)
    played = base[None] + np.einsum("tk,kvc->tvc", weights.astype(np.float64), deltas)
    np.testing.assert_allclose(played, rig(subject, head.blendshapes, take["weights"]),
                               rtol=0, atol=1e-7)


def test_glb_framing(take):
    data = take["path"].read_bytes()
    magic, version, length = struct.unpack_from("<III", data, 0)
    assert (magic, version, length) == (0x46546C67, 2, len(data))
    json_len, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_len % 4 == 0
    text = data[20:20 + json_len]
    assert text.rstrip(b" ") == text.rstrip() and json.loads(text)
    bin_len, bin_type = struct.unpack_from("<II", data, 20 + json_len)
    assert bin_type == 0x004E4942 and bin_len % 4 == 0
    assert 28 + json_len + bin_len == len(data)
    buffer_len = json.loads(text)["buffers"][0]["byteLength"]
    assert bin_len - 3 <= buffer_len <= bin_len


def test_without_colors_and_one_frame(tmp_path, head):
    path = write_glb(tmp_path / "one.glb", head.vertices, head.faces, head.blendshapes[:3],
                     np.full((1, 3), 0.5), 25, names=["a", "b", "c"])
    g = pygltflib.GLTF2().load_binary(str(path))
    prim = g.meshes[0].primitives[0]
    assert prim.attributes.COLOR_0 is None and len(prim.targets) == 3
    assert g.meshes[0].extras["targetNames"] == ["a", "b", "c"]
    assert _read(g, g.animations[0].samplers[0].input).tolist() == [[0.0]]


def _validator() -> Path | None:
    """The gltf-validator npm package: $AVGUIDE_GLTF_VALIDATOR (its folder, or a node_modules
    holding it), else a global npm install."""
    candidates = []
    if os.environ.get("AVGUIDE_GLTF_VALIDATOR"):
        root = Path(os.environ["AVGUIDE_GLTF_VALIDATOR"])
        candidates += [root, root / "gltf-validator", root / "node_modules" / "gltf-validator"]
    if shutil.which("npm"):
        try:
            out = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, timeout=30)
            candidates.append(Path(out.stdout.strip()) / "gltf-validator")
        except (OSError, subprocess.TimeoutExpired):
            pass
    return next((c for c in candidates if (c / "package.json").is_file()), None)


def _validate(path: Path) -> dict:
    node, package = shutil.which("node"), _validator()
    if node is None or package is None:
        pytest.skip("the Khronos glTF validator needs node and the npm package gltf-validator "
                    "(npm install gltf-validator in any folder, then set "
                    "AVGUIDE_GLTF_VALIDATOR=<folder>/node_modules)")
    script = ("const v = require(process.argv[1]); const fs = require('fs');"
              "v.validateBytes(new Uint8Array(fs.readFileSync(process.argv[2])))"
              ".then(r => console.log(JSON.stringify(r.issues)))"
              ".catch(e => { console.error(e); process.exit(2); });")
    out = subprocess.run([node, "-e", script, str(package), str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_khronos_validator_reports_no_issue(take, tmp_path):
    issues = _validate(take["path"])
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"]
    assert issues["numInfos"] == 0 and issues["numHints"] == 0, issues["messages"]
    # the harness does see errors: a wrong POSITION min is one
    broken = pygltflib.GLTF2().load_binary(str(take["path"]))
    broken.accessors[broken.meshes[0].primitives[0].attributes.POSITION].min[0] -= 1.0
    broken.save_binary(str(tmp_path / "broken.glb"))
    issues = _validate(tmp_path / "broken.glb")
    assert issues["numErrors"] >= 1
    assert any(m["code"] == "ACCESSOR_MIN_MISMATCH" for m in issues["messages"]), issues


@pytest.mark.parametrize("case, words", [
    ("face_high", ["faces", "outside [0, 4742)"]),
    ("face_negative", ["faces", "-1"]),
    ("face_shape", ["faces", "(F, 3)"]),
    ("weights", ["weights", "(T, 52)"]),
    ("no_frames", ["T = 0"]),
    ("nan_weights", ["weights", "NaN"]),
    ("fps", ["fps"]),
    ("shapes", ["blendshapes", "4742"]),
    ("names", ["names", "52 distinct"]),
    ("colors_range", ["vertex_colors", "[0, 1]"]),
    ("colors_shape", ["vertex_colors", "(4742, 3)"]),
])
def test_bad_input_is_one_clear_error(tmp_path, head, case, words):
    args = dict(template=head.vertices, faces=np.array(head.faces), blendshapes=head.blendshapes,
                weights=np.zeros((2, 52)), fps=30.0)
    kw = {}
    if case == "face_high":
        args["faces"][0, 0] = 4742
    elif case == "face_negative":
        args["faces"][3, 2] = -1
    elif case == "face_shape":
        args["faces"] = args["faces"][:, :2]
    elif case == "weights":
        args["weights"] = np.zeros((2, 51))
    elif case == "no_frames":
        args["weights"] = np.zeros((0, 52))
    elif case == "nan_weights":
        args["weights"] = np.full((2, 52), np.nan)
    elif case == "fps":
        args["fps"] = float("inf")
    elif case == "shapes":
        args["blendshapes"] = head.blendshapes[:, :100]
    elif case == "names":
        kw["names"] = list(ARKIT_NAMES[:51]) + ["eyeBlinkLeft"]
    elif case == "colors_range":
        kw["vertex_colors"] = np.full((4742, 3), 1.5)
    elif case == "colors_shape":
        kw["vertex_colors"] = np.zeros((4742, 4))
    with pytest.raises(ValueError) as e:
        write_glb(tmp_path / "bad.glb", **args, **kw)
    assert not isinstance(e.value, BadInputError)  # the caller's arrays: a programming error
    assert str(e.value).startswith("write_glb:")
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert not (tmp_path / "bad.glb").exists()
