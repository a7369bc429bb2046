import pickle

import numpy as np
import pytest
import soundfile as sf


def write_recording(root, name, n_vertices, seconds, fps, rate=16000, channels=1, seed=0):
    """A fake recording: sine audio at ``rate`` and random vertices at ``fps``."""
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    (root / "vertices_npy").mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    wav = 0.3 * np.sin(2 * np.pi * 220 * t)
    if channels > 1:
        wav = np.stack([wav] * channels, axis=1)
    sf.write(root / "wav" / f"{name}.wav", wav, rate)
    verts = rng.normal(size=(int(round(seconds * fps)), n_vertices * 3)).astype(np.float32)
    np.save(root / "vertices_npy" / f"{name}.npy", verts)
    return verts


@pytest.fixture(name="write_recording")
def write_recording_fixture():
    return write_recording


@pytest.fixture
def vocaset_dir(tmp_path):
    """A 2-subject VOCASET-layout dataset at 60 fps with 22.05 kHz audio, like the real one."""
    root = tmp_path / "vocaset"
    subjects = ["FaceTalk_170728_03272_TA", "FaceTalk_170809_00138_TA"]
    templates = {}
    for i, s in enumerate(subjects):
        templates[s] = np.random.default_rng(i).normal(size=(10, 3)).astype(np.float32)
        for n in (1, 21):
            write_recording(root, f"{s}_sentence{n:02d}", 10, 1.0 + 0.1 * n / 21, 60, rate=22050, seed=n)
    (root / "templates.pkl").write_bytes(pickle.dumps(templates, protocol=2))
    (root / "sentencestext").mkdir()
    for s in subjects:
        (root / "sentencestext" / f"{s}.txt").write_text("\n".join(f"sentence number {k}" for k in range(1, 41)))
    return root


@pytest.fixture
def biwi_dir(tmp_path):
    """A BIWI-layout dataset (CodeTalker names, 25 fps, regions/lve.txt and fdd.txt)."""
    root = tmp_path / "biwi"
    templates = {}
    for i, s in enumerate(["F2", "F1"]):
        templates[s] = np.zeros((12, 3), np.float32)
        for e in (1, 33, 37):
            write_recording(root, f"{s}_e{e:02d}", 12, 0.8, 25, seed=e)
    (root / "templates.pkl").write_bytes(pickle.dumps(templates))
    (root / "regions").mkdir()
    (root / "regions" / "lve.txt").write_text("1, 2, 3, 4")
    (root / "regions" / "fdd.txt").write_text("7, 8, 9")
    return root
