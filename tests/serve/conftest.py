"""Fixtures of the studio tests: a tiny streaming animator of the real head, and a live server on
127.0.0.1 (a free port) in a background thread, stopped when the tests using it are done."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

SERVER_PACKAGES = "the studio needs fastapi and uvicorn (pip install fastapi uvicorn)"


@dataclass
class TinyAnimator:
    """What :class:`avguide.serve.engine.Engine` reads of a loaded animator."""

    model: torch.nn.Module
    fps: float
    train_subjects: list[str]
    templates: dict[str, np.ndarray] = field(default_factory=dict)
    checkpoint: Path = Path("tiny-random-animator")


def tiny_animator(kind: str = "faceformer") -> TinyAnimator:
    """A random-initialised streaming animator (tiny preset, 2 mel frames of look-ahead, 12-frame
    attention windows) on the head's 4742 vertices, two speaking styles. Its output map (FaceFormer:
    ``vertice_map_r``; CodeTalker: the VQ decoder's last layer) is a random mix of the head's
    blendshapes, so its motion is facial (within the rig) and moves with the speech, and its ARKit
    weights are far from constant."""
    from avguide.animators import build_animator, codetalker_tiny, faceformer_tiny
    from avguide.assets.head import load_head

    head = load_head()
    torch.manual_seed(0)
    cfg = faceformer_tiny() if kind == "faceformer" else codetalker_tiny()
    cfg.audio.lookahead, cfg.context = 2, 12
    if kind == "codetalker":
        cfg.vq.context = 12
    model = build_animator(cfg, head.num_vertices, 2).eval()
    out = model.vertice_map_r if kind == "faceformer" else model.vqvae.dec_out
    basis = torch.from_numpy(head.blendshapes.reshape(52, -1).copy())  # (52, V*3)
    g = torch.Generator().manual_seed(1)
    mix = torch.randn(52, out.in_features, generator=g) * 0.08         # (52, D)
    with torch.no_grad():
        out.weight.copy_(basis.T @ mix)                                  # (V*3, D)
        out.bias.copy_(basis.T @ torch.full((52,), 0.4))
        if kind == "codetalker":  # zero-initialised: every frame would pick the same codes
            model.feat_map.weight.normal_(0, 0.5, generator=g)
    shifted = head.vertices + 0.002 * head.blendshapes[17]  # bob's face: slightly open jaw
    return TinyAnimator(model, float(cfg.fps), ["alice", "bob"], {"alice": head.vertices.copy(), "bob": shifted})


@pytest.fixture(scope="session")
def anim() -> TinyAnimator:
    return tiny_animator()


@pytest.fixture(scope="session")
def anim_codetalker() -> TinyAnimator:
    return tiny_animator("codetalker")


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a daemon thread."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/api/stream"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        for _ in range(200):  # bounded: 20 s
            if self.server.started:
                return self
            time.sleep(0.1)
        raise RuntimeError("the test server did not start in 20 s")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


@pytest.fixture(scope="module")
def live_server(anim):
    """The studio with small limits (1 MB uploads, 20 s of speech, 4 streams) on a free port."""
    pytest.importorskip("fastapi", reason=SERVER_PACKAGES)
    pytest.importorskip("uvicorn", reason=SERVER_PACKAGES)
    from avguide.serve import Limits, create_app

    limits = Limits(max_upload_bytes=2 ** 20, max_seconds=20.0, max_chunk_bytes=16000, max_streams=4, keep_jobs=4)
    with LiveServer(create_app(anim, limits)) as server:
        yield server
