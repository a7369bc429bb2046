import dataclasses
import pickle
from typing import Literal

import numpy as np
import pytest

from avguide.config import config_to_dict, load_config
from avguide.errors import BadInputError, MissingFileError
from avguide.io import atomic_path, safe_load_pickle, save_npy_atomic


@dataclasses.dataclass
class Inner:
    lr: float = 1e-3
    layers: int = 2

    def check(self):
        return [] if self.lr > 0 else [f"lr: must be > 0, got {self.lr}"]


@dataclasses.dataclass
class Outer:
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    ids: list[int] = dataclasses.field(default_factory=lambda: [1, 2])
    inner: Inner = dataclasses.field(default_factory=Inner)


def test_overrides_and_yaml(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("name: y\ninner:\n  layers: 5\n")
    cfg = load_config(Outer, y, ["inner.lr=1e-4", "mode=b", "ids=[3,4,5]"])
    assert cfg.name == "y" and cfg.inner.layers == 5 and cfg.inner.lr == 1e-4
    assert cfg.mode == "b" and cfg.ids == [3, 4, 5]
    assert config_to_dict(cfg)["inner"] == {"lr": 1e-4, "layers": 5}


def test_all_errors_reported_together():
    with pytest.raises(BadInputError) as e:
        load_config(Outer, None, ["nope=1", "mode=c", "inner.layers=two", "inner.lr=-1"])
    msg = str(e.value)
    assert "nope: unknown key" in msg and "mode: expected one of" in msg
    assert "inner.layers: expected int" in msg


def test_check_runs_after_types():
    with pytest.raises(BadInputError, match=r"inner.lr: must be > 0"):
        load_config(Outer, None, ["inner.lr=-1"])


def test_missing_yaml(tmp_path):
    with pytest.raises(MissingFileError, match="nope.yaml"):
        load_config(Outer, tmp_path / "nope.yaml")


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    p = tmp_path / "a.npy"
    save_npy_atomic(p, np.arange(3))
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("interrupted")
    assert np.load(p).tolist() == [0, 1, 2]
    assert [f.name for f in tmp_path.iterdir()] == ["a.npy"]
    import os
    mask = os.umask(0)
    os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask   # not mkstemp's 0600


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned > /dev/null",))


def test_safe_pickle_accepts_templates(tmp_path):
    p = tmp_path / "templates.pkl"
    data = {"FaceTalk_A": np.random.rand(4, 3).astype(np.float32), "B": np.zeros((4, 3))}
    p.write_bytes(pickle.dumps(data, protocol=2))
    out = safe_load_pickle(p)
    assert set(out) == {"FaceTalk_A", "B"}
    np.testing.assert_array_equal(out["FaceTalk_A"], data["FaceTalk_A"])


def test_safe_pickle_rejects_code(tmp_path, monkeypatch):
    import os
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"x": _Evil()}))
    called = []
    monkeypatch.setattr(os, "system", lambda *a: called.append(a))
    with pytest.raises(BadInputError, match="forbidden global"):
        safe_load_pickle(p)
    assert not called


def test_safe_pickle_corrupt(tmp_path):
    p = tmp_path / "bad.pkl"
    p.write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(BadInputError, match="bad.pkl"):
        safe_load_pickle(p)


@pytest.mark.parametrize("content, words", [
    (bytes(range(256)), "not a UTF-8 config file"),
    ("name: caf\xe9\n".encode("latin-1"), "byte 0xe9"),
    (b"inner: [1, 2\n", "invalid config file at line"),
    (b"- a\n- b\n", "top level must be a mapping"),
    (b"1: x\n", "config keys must be names"),
])
def test_bad_yaml_file_is_one_line_naming_it(tmp_path, content, words):
    p = tmp_path / "c.yaml"
    p.write_bytes(content)
    with pytest.raises(BadInputError) as e:
        load_config(Outer, p)
    msg = str(e.value)
    assert msg.startswith(str(p)) and words in msg and "\n" not in msg


def test_all_config_errors_on_one_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("nope: 1\n")
    with pytest.raises(BadInputError) as e:
        load_config(Outer, p, ["mode=c", "inner.lr=-1"])
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg
    assert "nope: unknown key" in msg and "mode: expected one of" in msg


@dataclasses.dataclass
class Seeded:
    seed: int = 0
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    rate: float = 1.0
    rates: list[float] = dataclasses.field(default_factory=lambda: [1.0])


@pytest.mark.parametrize("overrides, words", [
    (["rate=nan"], "rate: must be a finite number, got 'nan'"),
    (["rate=-inf"], "rate: must be a finite number"),
    (["rates=[1.0, .inf]"], "rates: must be a finite number"),
    (["seed=-1"], "seed: must be an integer in [0, 4294967295], got -1"),
    (["seed=4294967296"], "seed: must be an integer in [0, 4294967295]"),
    (["seeds=[0, -3]"], "seeds: must be integers in [0, 4294967295], got [0, -3]"),
])
def test_numbers_are_finite_and_seeds_in_range(overrides, words):
    """Every config: no NaN/inf number (a NaN passes every `x < limit` check), and seeds numpy
    and torch both accept (numpy refuses negative ones, torch those of 64 bits)."""
    with pytest.raises(BadInputError) as e:
        load_config(Seeded, None, overrides)
    assert words in str(e.value)
    assert load_config(Seeded, None, ["seed=4294967295", "rate=1e-300"]).seed == 4294967295

