"""The studio's takes on disk: one folder per animated utterance, the oldest removed first.

A :class:`JobStore` owns a temporary folder; :meth:`JobStore.add` writes a take's files (speech
wav, glb, Live Link Face CSV and JSON, and the vertices for the mp4, which is rendered the first
time it is asked for) under a new random id. At most ``keep`` takes are kept, so disk use is
bounded.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from avguide.serve.engine import Engine, Take

FILES = {"wav": ("speech.wav", "audio/wav"), "glb": ("take.glb", "model/gltf-binary"),
         "csv": ("take_arkit.csv", "text/csv"), "json": ("take_arkit.json", "application/json"),
         "mp4": ("take.mp4", "video/mp4")}
"""Format -> (file name in a take's folder and its URL, media type)."""


@dataclass
class Job:
    """One take: its folder and what the page is told about it."""

    id: str
    folder: Path
    info: dict
    template: np.ndarray  # (V, 3) the subject's face, for the mp4
    lock: threading.Lock = field(default_factory=threading.Lock)  # one mp4 render at a time


class JobStore:
    """Takes in a temporary folder, at most ``keep`` of them (thread-safe).

    Args:
        engine: writes and renders the files. keep: takes kept (>= 1).
    """

    def __init__(self, engine: Engine, keep: int = 8):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.engine, self.keep = engine, keep
        self.root = Path(tempfile.mkdtemp(prefix="avguide-serve-"))
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.lock = threading.Lock()

    def add(self, take: Take, title: str) -> Job:
        """Write a take's files; returns its job (``info`` is the JSON the API answers)."""
        job_id = secrets.token_hex(8)
        folder = self.root / job_id
        folder.mkdir()
        paths = self.engine.write_take(take, folder)  # the vertices too, for the mp4 on request
        fit = json.loads(paths["arkit"].with_suffix(".json").read_text())["reconstruction"]
        files = {fmt: f"/api/jobs/{job_id}/{name}" for fmt, (name, _) in FILES.items()}
        info = {"id": job_id, "title": title, "subject": take.subject, "fps": self.engine.fps,
                "frames": int(len(take.vertices)), "seconds": round(len(take.audio) / 16000, 4),
                "arkit_rms_mm": round(fit["rms_error_mm"], 4), "files": files}
        job = Job(job_id, folder, info, take.template)
        with self.lock:
            self.jobs[job_id] = job
            while len(self.jobs) > self.keep:
                _, old = self.jobs.popitem(last=False)
                shutil.rmtree(old.folder, ignore_errors=True)
        return job

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def file(self, job: Job, name: str) -> Path | None:
        """The path of a take's file by its URL name (the mp4 rendered first if needed), or None
        for an unknown name or a take removed meanwhile."""
        known = {n: fmt for fmt, (n, _) in FILES.items()}
        if name not in known:
            return None
        path = job.folder / name
        if known[name] == "mp4":
            with job.lock:
                if not path.is_file() and job.folder.is_dir():
                    vertices = np.load(job.folder / "take.npy")  # (T, V*3)
                    audio, _ = sf.read(job.folder / FILES["wav"][0], dtype="float32")
                    take = Take(audio, vertices.reshape(len(vertices), -1, 3), job.info["subject"], job.template)
                    self.engine.write_take(take, job.folder, ("mp4",))
        return path if path.is_file() else None

    def close(self) -> None:
        """Remove every take and the folder."""
        shutil.rmtree(self.root, ignore_errors=True)
