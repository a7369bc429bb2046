"""Streaming animation speed (not a test): latency, real-time factor and look-ahead of /api/stream.

    python bench/stream.py [--model default] [--seconds 20] [--chunk-ms 20 40 100] [--threads 1]

Speech: espeak-ng sentences (several voices) to ``--seconds`` s. For each chunk size, three runs:

* **in-process**: the server's per-connection work (:class:`avguide.serve.stream.StreamSession`:
  PCM decode, :class:`AnimationStream` push, ARKit weights of the new frames, the JSON reply)
  chunk after chunk as fast as it goes. *latency*: wall time from a chunk handed in to its reply
  ready; *RTF*: the time of all chunks and the finish over the speech's duration (wall, and
  process CPU: the fairer figure on a shared machine).
* **websocket**: a real server (uvicorn, 127.0.0.1) and a client sending the chunks **in real
  time** (one every chunk duration); *latency*: from a chunk's send to the receipt of the frames
  it completed (chunks that complete no frame are not counted).
* **look-ahead**: the algorithmic bound (the encoder's ``lookahead_s``) and the one measured: for
  each frame, the speech received when it came out minus its own time, at 10 ms chunks (max
  over frames, minus the 10 ms granularity).

Figures are medians (p95 beside). The model: a shipped animator (``--model default``); where none
is shipped, the same architecture (:func:`avguide.animators.faceformer_cpu`) randomly
initialised, which costs the same time. Targets (issue 20, 2 cores): latency < 150 ms,
look-ahead <= 100 ms, RTF < 0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import torch

SENTENCES = ["The studio streams speech to a talking head, chunk by chunk.",
             "Every frame comes out as soon as its look-ahead has arrived.",
             "Bright vowels and closed lips: papa, mama, bob, and the moon.",
             "A streaming server keeps its memory constant for any length of speech."]
TARGETS = {"latency_ms": 150.0, "lookahead_ms": 100.0, "rtf": 0.1}


def _animator(name: str):
    """The shipped animator, or the cpu preset at random initialisation on the head."""
    from avguide.errors import AvguideError

    if name != "random":
        try:
            from avguide.animate import load_animator

            return load_animator(name), name
        except (AvguideError, ImportError) as e:
            print(f"(no animator {name!r}: {str(e)[:120]}; using the faceformer_cpu preset, random weights)")
    from types import SimpleNamespace

    from avguide.animators import build_animator, faceformer_cpu
    from avguide.assets.head import load_head

    head = load_head()
    torch.manual_seed(0)
    cfg = faceformer_cpu()
    model = build_animator(cfg, head.num_vertices, 8).eval()
    return SimpleNamespace(model=model, fps=float(cfg.fps), train_subjects=[f"s{i}" for i in range(8)],
                           templates={}, checkpoint=Path("random")), "faceformer_cpu (random weights)"


def _speech(seconds: float) -> np.ndarray:
    """(L,) int16 little-endian speech of at least ``seconds``."""
    from avguide.animate import speak_text
    from avguide.speech.espeak import VARIANTS

    parts, total, i = [], 0, 0
    while total < seconds * 16000:
        a = speak_text(SENTENCES[i % len(SENTENCES)], VARIANTS[i % len(VARIANTS)])
        parts.append(a)
        total += len(a)
        i += 1
    audio = np.concatenate(parts)[: int(seconds * 16000)]
    return np.round(np.clip(audio, -1, 1) * 32767).astype("<i2")


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), float(np.percentile(values, 95))


def in_process(engine, pcm: np.ndarray, chunk: int) -> dict:
    """Per-chunk latency and RTF of the server's per-connection work, as fast as it goes."""
    from avguide.serve.stream import StreamSession

    session = StreamSession(engine, max_chunk_bytes=2 ** 30)
    session.handle(text=json.dumps({"type": "start"}))
    lat = []
    t_all, c_all = time.perf_counter(), time.process_time()
    for s in range(0, len(pcm), chunk):
        t0 = time.perf_counter()
        session.handle(data=pcm[s: s + chunk].tobytes())
        lat.append(time.perf_counter() - t0)
    session.handle(text=json.dumps({"type": "finish"}))
    wall, cpu = time.perf_counter() - t_all, time.process_time() - c_all
    seconds = len(pcm) / 16000
    return {"latency_ms": _stats([1e3 * v for v in lat]), "rtf": wall / seconds, "rtf_cpu": cpu / seconds,
            "frames": session.frames}


def lookahead(engine, pcm: np.ndarray) -> tuple[float, float]:
    """(algorithmic, measured) look-ahead in seconds: 10 ms chunks, the speech received when
    each frame came out minus the frame's time."""
    stream, _ = engine.stream(None)
    waited, frames = [], 0
    for s in range(0, len(pcm), 160):
        k = len(stream.push(pcm[s: s + 160].astype(np.float32) / 32768.0))
        received = min(s + 160, len(pcm)) / 16000
        waited += [received - (frames + j) / engine.fps for j in range(k)]
        frames += k
    return stream.lookahead_s, max(waited) - 0.01


def over_websocket(url: str, pcm: np.ndarray, chunk: int) -> dict:
    """Real-time client: chunk send -> frames received, over loopback."""
    from websockets.sync.client import connect

    sent: dict[int, float] = {}  # samples sent after a chunk -> its send time
    lat: list[float] = []
    with connect(url, max_size=None) as ws:
        ws.send(json.dumps({"type": "start"}))
        ready = json.loads(ws.recv(timeout=60))
        assert ready["type"] == "ready", ready

        def receive():
            while True:
                msg = json.loads(ws.recv(timeout=120))
                if msg["type"] == "done":
                    return
                now = time.perf_counter()
                at = round(msg["audio_s"] * 16000)
                if at in sent and at < len(pcm):  # frames a chunk completed (not the finish's)
                    lat.append(now - sent[at])

        reader = threading.Thread(target=receive)
        reader.start()
        start = time.perf_counter()
        for i, s in enumerate(range(0, len(pcm), chunk)):
            delay = start + i * chunk / 16000 - time.perf_counter()  # real time: one chunk per chunk duration
            if delay > 0:
                time.sleep(delay)
            part = pcm[s: s + chunk]
            sent[s + len(part)] = time.perf_counter()
            ws.send(part.tobytes())
        ws.send(json.dumps({"type": "finish"}))
        reader.join(timeout=300)
    return {"latency_ms": _stats([1e3 * v for v in lat]), "n": len(lat)}


def _start_server(anim):
    """uvicorn serving the studio on 127.0.0.1 (a free port) in a daemon thread; ``.ws_url``."""
    import socket

    import uvicorn

    from avguide.serve import Limits, create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(anim, Limits(max_chunk_bytes=2 ** 22)), log_level="warning"))
    server.ws_url = f"ws://127.0.0.1:{sock.getsockname()[1]}/api/stream"
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    for _ in range(200):
        if server.started:
            return server
        time.sleep(0.1)
    raise RuntimeError("the server did not start in 20 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="shipped name or run; 'random': the preset, random weights")
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds of speech per run")
    ap.add_argument("--chunk-ms", type=float, nargs="+", default=[20.0, 40.0, 100.0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the server uses 1)")
    ap.add_argument("--no-websocket", action="store_true", help="skip the loopback server runs")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from avguide.serve.engine import Engine

    anim, name = _animator(a.model)
    engine = Engine(anim)
    pcm = _speech(a.seconds)
    algo, measured = lookahead(engine, pcm[: 5 * 16000])
    server = None if a.no_websocket else _start_server(anim)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"model: {name}, {engine.fps:g} fps | torch threads {a.threads} | {os.cpu_count()} cores, "
          f"load average {load:.1f} | {len(pcm) / 16000:.0f} s of speech per run")
    print(f"look-ahead: algorithmic {1e3 * algo:.1f} ms, measured {1e3 * measured:.1f} ms "
          f"(target <= {TARGETS['lookahead_ms']:.0f} ms)")
    header = (f"{'chunk':>7} | {'latency in-process':>20} | {'latency websocket':>20} | {'RTF wall':>8} | "
              f"{'RTF cpu':>7} | {'sound->frame':>12}")
    print(header)
    print("-" * len(header))
    for ms in a.chunk_ms:
        chunk = int(round(ms * 16))
        inproc = in_process(engine, pcm, chunk)
        ws = over_websocket(server.ws_url, pcm, chunk) if server else None
        lat = ws["latency_ms"][0] if ws else inproc["latency_ms"][0]
        # a sound waits for its chunk to fill (half a chunk on average), the look-ahead, the compute
        delay = ms / 2 + 1e3 * algo + lat
        wstext = f"{ws['latency_ms'][0]:6.1f} (p95 {ws['latency_ms'][1]:5.1f}) ms" if ws else f"{'-':>20}"
        print(f"{ms:5.0f} ms | {inproc['latency_ms'][0]:6.1f} (p95 {inproc['latency_ms'][1]:5.1f}) ms | {wstext} | "
              f"{inproc['rtf']:8.3f} | {inproc['rtf_cpu']:7.3f} | {delay:9.0f} ms")
    print(f"targets: latency < {TARGETS['latency_ms']:.0f} ms, look-ahead <= {TARGETS['lookahead_ms']:.0f} ms, "
          f"RTF < {TARGETS['rtf']}; sound->frame = chunk/2 + look-ahead + websocket latency (median)")
    if server:
        server.should_exit = True


if __name__ == "__main__":
    main()
