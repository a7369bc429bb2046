"""The example in avguide.export's docstring runs as written and its files read back."""

import numpy as np
import pytest

import avguide.export
from avguide.export import read_arkit_csv


def test_package_docstring_example_runs(tmp_path, monkeypatch, head):
    doc = avguide.export.__doc__
    block = doc[doc.index("::\n") + 3:doc.index("Every writer")]
    code = "\n".join(line[4:] for line in block.splitlines())
    rng = np.random.default_rng(0)
    weights = rng.uniform(0, 1, size=(31, 52))
    vertices = head.vertices[None] + np.einsum("tk,kvc->tvc", weights, head.blendshapes)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "avguide.export docstring", "exec"), {"vertices": vertices})
    got, fps = read_arkit_csv(tmp_path / "take.csv")
    assert fps == 30.0
    np.testing.assert_allclose(got, weights, atol=1e-4)
    assert (tmp_path / "take.glb").stat().st_size > 52 * head.num_vertices * 12
    pytest.importorskip("pygltflib").GLTF2().load_binary(str(tmp_path / "take.glb"))
