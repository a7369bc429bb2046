import json
import pickle

import numpy as np
import pytest
import soundfile as sf


def make_toy_dataset(root, n_vertices=24, fps=25, seconds=(0.8, 1.0, 1.2), seed=0):
    """A synthetic-layout dataset with a tiny mesh: 3 subjects (train, val, test) x 3 recordings,
    audio whose loudness drives a 'jaw' so that there is something to learn."""
    rng = np.random.default_rng(seed)
    for sub in ("wav", "vertices_npy", "sentencestext", "regions"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    subjects = {"Toy01": "train", "Toy02": "val", "Toy03": "test"}
    templates, splits = {}, {"train": [], "val": [], "test": []}
    jaw = rng.normal(size=(n_vertices, 3)).astype(np.float32) * 0.01
    for s, role in subjects.items():
        templates[s] = rng.normal(size=(n_vertices, 3)).astype(np.float32) * 0.05
        lines = []
        for j, sec in enumerate(seconds, start=1):
            n = int(sec * 16000)
            t = np.arange(n) / 16000
            env = 0.5 + 0.5 * np.sin(2 * np.pi * (2 + j) * t)
            sf.write(root / "wav" / f"{s}_sentence{j:02d}.wav", (0.3 * env * np.sin(2 * np.pi * 200 * t)).astype(np.float32),
                     16000, subtype="PCM_16")
            frames = int(np.floor(n * fps / 16000))
            a = env[(np.arange(frames) * 16000 // fps)]
            verts = templates[s][None] + a[:, None, None] * jaw[None]
            np.save(root / "vertices_npy" / f"{s}_sentence{j:02d}.npy", verts.reshape(frames, -1).astype(np.float32))
            lines.append(["HELLO WORLD", "A CAT SAT", "BLUE SKY"][j - 1])
            splits[role].append(f"{s}_sentence{j:02d}")
        (root / "sentencestext" / f"{s}.txt").write_text("\n".join(lines) + "\n")
    (root / "templates.pkl").write_bytes(pickle.dumps(templates))
    (root / "regions" / "lips.txt").write_text(", ".join(map(str, range(6))))
    (root / "regions" / "upper_face.txt").write_text(", ".join(map(str, range(18, 24))))
    faces = np.array([[i, i + 1, i + 2] for i in range(n_vertices - 2)], np.int32)
    np.save(root / "faces.npy", faces)
    (root / "manifest.json").write_text(json.dumps({"generator": "test", "fps": fps, "splits": splits,
                                                    "train_subjects": ["Toy01"]}))
    return root


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "data")
