import json
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

from avguide.train.losses import combine
from avguide.train.run import Run, seed_everything

TOY_SCORES = {1: 2.0, 2: 4.0, 3: 1.0, 4: 3.0}  # the best epoch is 3, not the last


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


def _train_toy(run, epochs=4, resume=False):
    """A tiny loop on the run core, the way every stage uses it (dropout and random batches: the
    RNG state matters). Epoch e saves step 2e with validation score ``TOY_SCORES[e]`` (logged as
    "val"; epochs past 4 score e). Returns the model."""
    seed_everything(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with Run(run, {"lr": 1e-2}, resume=resume) as r:
        state = r.restore(model)
        if state is not None:
            opt.load_state_dict(state["optimizer"])
        for epoch in range(r.epoch + 1, epochs + 1):
            loss, logs = combine({"mse": model(torch.randn(16, 4)).pow(2).mean()}, {"mse": 1.0})
            opt.zero_grad()
            loss.backward()
            opt.step()
            score = TOY_SCORES.get(epoch, float(epoch))
            r.save(model, {"optimizer": opt.state_dict()}, epoch=epoch, step=2 * epoch,
                   metrics={**logs, "val": score}, score=score, seconds=0.0)
    return model


@pytest.fixture(scope="session")
def train_toy():
    """``train_toy(run, epochs=4, resume=False) -> model``: the toy loop above (shared by the run-core tests)."""
    return _train_toy
