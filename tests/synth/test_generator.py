"""The synthetic benchmark generator, end to end on a tiny size."""

import hashlib
import json
import math

import numpy as np
import pytest
import soundfile as sf

from avguide.config import load_config
from avguide.data.layouts import open_dataset
from avguide.data.samples import load_sample
from avguide.errors import BadInputError
from avguide.synth.generator import SynthConfig, assign_sentences, generate
from avguide.data.splits import synthetic_subject_roles


def _digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "a"
    cfg = load_config(SynthConfig, None, ["subjects=3", "sentences=2", "workers=2", "seed=3"])
    summary = generate(cfg, root, progress=False)
    return root, summary


def test_layout_and_shapes(tiny):
    root, summary = tiny
    m = json.loads((root / "manifest.json").read_text())
    assert summary["recordings"] == 6 and m["fps"] == 30 and m["units"] == "metres"
    v = m["n_vertices"]
    for name, frames in m["recordings"].items():
        info = sf.info(root / "wav" / f"{name}.wav")
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        verts = np.load(root / "vertices_npy" / f"{name}.npy")
        assert verts.dtype == np.float32 and verts.shape == (frames, 3 * v)
        assert frames == math.floor(info.frames * 30 / 16000)      # the dataset length rule
        bs = np.load(root / "blendshapes_npy" / f"{name}.npy")
        assert bs.shape == (frames, 52) and bs.min() >= 0 and bs.max() <= 1
        align = json.loads((root / "alignments" / f"{name}.json").read_text())
        assert align["phones"][-1][2] == pytest.approx(info.frames / 16000, abs=0.05)
    assert np.load(root / "faces.npy").shape[1] == 3
    assert {"lips", "upper_face"} <= {p.stem for p in (root / "regions").glob("*.txt")}


def test_reads_back_as_synthetic_dataset(tiny):
    root, _ = tiny
    idx = open_dataset(root)
    assert idx.layout == "synthetic" and idx.audio_strict and idx.fps == 30
    assert [s.name for s in idx.split("train")] == ["Synth01_sentence01", "Synth01_sentence02"]
    assert [s.name for s in idx.split("val")] == ["Synth02_sentence02"]
    assert [s.name for s in idx.split("test")] == ["Synth03_sentence02"]
    s = load_sample(idx, idx.split("test")[0], need_text=True)
    assert s.text and s.vertices.shape[1:] == (idx.n_vertices, 3)
    # motion moves the mouth: the lips are not static
    lips = idx.regions["lips"]
    assert np.ptp(s.vertices[:, lips, 1], axis=0).max() > 0.003


def test_byte_identical_across_worker_counts(tiny, tmp_path):
    root, _ = tiny
    cfg = load_config(SynthConfig, None, ["subjects=3", "sentences=2", "workers=1", "seed=3"])
    generate(cfg, tmp_path / "b", progress=False)
    assert _digest(root) == _digest(tmp_path / "b")


def test_seed_changes_data(tiny, tmp_path):
    root, _ = tiny
    cfg = load_config(SynthConfig, None, ["subjects=3", "sentences=2", "workers=1", "seed=4"])
    generate(cfg, tmp_path / "c", progress=False)
    a, b = _digest(root), _digest(tmp_path / "c")
    assert a["templates.pkl"] != b["templates.pkl"]


@pytest.mark.parametrize("protocol", ["disjoint", "vocaset"])
def test_sentence_protocols(protocol):
    cfg = load_config(SynthConfig, None, [f"protocol={protocol}"])
    roles = synthetic_subject_roles(cfg.subjects)
    assert roles.count("train") == 8 and roles.count("val") == 2 and roles.count("test") == 2
    a = assign_sentences(cfg, roles)
    train = {k for s, r in enumerate(roles) if r == "train" for k in a[s]}
    val = {k for s, r in enumerate(roles) if r == "val" for k in a[s][20:]}
    test = {k for s, r in enumerate(roles) if r == "test" for k in a[s][20:]}
    assert all(len(set(row)) == 40 for row in a)           # distinct within a subject
    if protocol == "disjoint":
        assert not (train & test) and not (train & val) and not (val & test)
    else:
        assert train & test                                   # shared, as in VOCASET


def test_config_errors_reported_together():
    with pytest.raises(BadInputError) as e:
        load_config(SynthConfig, None, ["subjects=2", "fps=500", "protocol=other"])
    msg = str(e.value)
    assert "subjects: need at least 3" not in msg or "fps" in msg  # types first, then checks
    assert "protocol: expected one of" in msg


def test_refuses_foreign_nonempty_dir(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "important.txt").write_text("keep me")
    cfg = load_config(SynthConfig, None, ["subjects=3", "sentences=2"])
    with pytest.raises(BadInputError, match="not empty"):
        generate(cfg, tmp_path / "x", progress=False)


def test_exclude_texts_from_keeps_another_datasets_sentences_out(tiny, tmp_path):
    from avguide.synth.generator import _sentence_pool
    from avguide.synth.text import generate_sentences

    first = generate_sentences(8, 3)
    assert _sentence_pool(5, 3, {first[1], first[3]}) == [first[0], first[2], first[4], first[5], first[6]]
    root, _ = tiny
    cfg = load_config(SynthConfig, None, ["subjects=3", "sentences=2", "workers=1", "seed=3",
                                          f"exclude_texts_from={root}"])
    generate(cfg, tmp_path / "d", progress=False)

    def texts(r):
        return {t for f in (r / "sentencestext").glob("*.txt") for t in f.read_text().splitlines()}

    assert texts(root) and texts(tmp_path / "d") and not texts(root) & texts(tmp_path / "d")
    bad = load_config(SynthConfig, None, ["subjects=3", "sentences=2", "workers=1",
                                          f"exclude_texts_from={tmp_path / 'nowhere'}"])
    with pytest.raises(FileNotFoundError, match="sentencestext"):
        generate(bad, tmp_path / "e", progress=False)


def test_realism_off_by_default_on_changes_only_the_motion_and_stays_byte_identical(tiny, tmp_path):
    root, _ = tiny
    assert "realism" not in json.loads((root / "manifest.json").read_text())["config"]
    base = ["subjects=3", "sentences=2", "seed=3", "realism.enabled=true"]
    generate(load_config(SynthConfig, None, base + ["workers=2"]), tmp_path / "r2", progress=False)
    generate(load_config(SynthConfig, None, base + ["workers=1"]), tmp_path / "r1", progress=False)
    off, on = _digest(root), _digest(tmp_path / "r2")
    assert on == _digest(tmp_path / "r1")                     # any worker count, same bytes
    assert set(on) == set(off)
    motion = {k for k in off if k.startswith(("vertices_npy/", "blendshapes_npy/"))}
    assert len(motion) == 12 and all(on[k] != off[k] for k in motion)
    same = set(off) - motion - {"manifest.json"}               # speech, texts, templates, regions
    assert all(on[k] == off[k] for k in same)
    config = json.loads((tmp_path / "r2" / "manifest.json").read_text())["config"]
    assert config["realism"]["enabled"] is True and config["realism"]["visual_lead_ms"] == 25.0
