"""Streaming animation speed (not a test): latency, real-time factor and look-ahead of /api/stream.

    python bench/stream.py [--model faceformer] [--seconds 20] [--chunk-ms 20 40 100] [--threads 1]
    python bench/stream.py --compare REV [--repeats 5]     # this tree's RTF against git revision REV

Speech: espeak-ng sentences (several voices) to ``--seconds`` s. For each chunk size, three runs:

* **in-process**: the server's per-connection work (:class:`avguide.serve.stream.StreamSession`:
  PCM decode, :class:`AnimationStream` push, ARKit weights of the new frames, the JSON reply)
  chunk after chunk as fast as it goes. *latency*: wall time from a chunk handed in to its reply
  ready, over the chunks that complete a frame (the others only keep their samples); *RTF*: the time of all chunks and the finish over the speech's duration (wall, and
  process CPU: the fairer figure on a shared machine).
* **websocket**: a real server (uvicorn, 127.0.0.1) and a client sending the chunks **in real
  time** (one every chunk duration); *latency*: from a chunk's send to the receipt of the frames
  it completed (chunks that complete no frame are not counted).
* **look-ahead**: the algorithmic bound (the encoder's ``lookahead_s``) and the one measured: for
  each frame, the speech received when it came out minus its own time, at 10 ms chunks (max
  over frames, minus the 10 ms granularity).

``--compare REV`` measures a change instead: the in-process run of this tree and of the package
at git revision ``REV`` (``git archive``), alternating in fresh subprocesses (old, new, new, old,
...) so that both see the same load; medians over ``--repeats`` runs of each, and the ratios
new / old. On a machine shared with other work, the process-CPU figures and the ratios are the
ones to trust; wall time there is pessimistic.

Figures are medians (p95 beside). The model: a shipped animator (``--model faceformer``, the studio's); where none
is shipped, the same architecture (:func:`avguide.animators.faceformer_cpu`) randomly
initialised, which costs the same time. Targets (issue 20, 2 cores): latency < 150 ms,
look-ahead <= 100 ms, RTF < 0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
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
ROOT = Path(__file__).resolve().parents[1]


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
        t0, frames = time.perf_counter(), session.frames
        session.handle(data=pcm[s: s + chunk].tobytes())
        if session.frames > frames:
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


def worker(a: argparse.Namespace) -> None:
    """One in-process run per chunk size with the ``avguide`` first on the path; JSON on stdout."""
    import avguide
    from avguide.serve.engine import Engine

    engine = Engine(_animator(a.model)[0])
    pcm = _speech(a.seconds)
    in_process(engine, pcm[:16000], 320)  # warm-up: first calls, allocator
    runs = {str(ms): in_process(engine, pcm, int(round(ms * 16))) for ms in a.chunk_ms}
    print(json.dumps({"package": str(Path(avguide.__file__).parent), "runs": runs}))


def compare(a: argparse.Namespace) -> None:
    """This tree against the package at git revision ``a.compare``, interleaved subprocesses."""
    with tempfile.TemporaryDirectory() as old:
        archive = subprocess.run(["git", "archive", a.compare, "avguide"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", old], input=archive.stdout, check=True)
        trees = {"old": old, "new": str(ROOT)}
        runs: dict[str, list[dict]] = {"old": [], "new": []}
        args = [sys.executable, __file__, "--worker", "--model", a.model, "--seconds", str(a.seconds),
                "--threads", str(a.threads), "--chunk-ms", *map(str, a.chunk_ms)]
        for r in range(a.repeats):
            for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
                env = {**os.environ, "PYTHONPATH": trees[name]}
                done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
                out = json.loads(done.stdout.strip().splitlines()[-1])
                assert Path(out["package"]).resolve() == (Path(trees[name]) / "avguide").resolve(), out["package"]
                runs[name].append(out["runs"])
                print(f"  run {r + 1}/{a.repeats} {name}: RTF cpu " +
                      " ".join(f"{ms:g} ms {out['runs'][str(ms)]['rtf_cpu']:.3f}" for ms in a.chunk_ms), flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"old: git {a.compare}, new: this tree | torch threads {a.threads} | {os.cpu_count()} cores, load average "
          f"{load:.1f} | {a.seconds:g} s of speech | medians of {a.repeats} interleaved runs each")
    header = (f"{'chunk':>7} | {'RTF cpu old':>11} | {'new':>6} | {'new/old':>7} | {'RTF wall old':>12} | {'new':>6} | "
              f"{'new/old':>7} | {'latency ms old':>14} | {'new':>5}")
    print(header)
    print("-" * len(header))
    for ms in a.chunk_ms:
        med = {(n, k): statistics.median(r[str(ms)][k] if k != "latency_ms" else r[str(ms)][k][0] for r in runs[n])
               for n in runs for k in ("rtf_cpu", "rtf", "latency_ms")}
        print(f"{ms:5.0f} ms | {med['old', 'rtf_cpu']:11.3f} | {med['new', 'rtf_cpu']:6.3f} | "
              f"{med['new', 'rtf_cpu'] / med['old', 'rtf_cpu']:7.2f} | {med['old', 'rtf']:12.3f} | {med['new', 'rtf']:6.3f} | "
              f"{med['new', 'rtf'] / med['old', 'rtf']:7.2f} | {med['old', 'latency_ms']:14.1f} | {med['new', 'latency_ms']:5.1f}")
    print(f"target: RTF < {TARGETS['rtf']} (issue 20, 2 cores)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="faceformer", help="shipped name or run; 'random': the preset, random weights")
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds of speech per run")
    ap.add_argument("--chunk-ms", type=float, nargs="+", default=[20.0, 40.0, 100.0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the server uses 1)")
    ap.add_argument("--no-websocket", action="store_true", help="skip the loopback server runs")
    ap.add_argument("--compare", metavar="REV", help="time this tree against git revision REV (in-process RTF)")
    ap.add_argument("--repeats", type=int, default=5, help="runs of each tree with --compare")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one run of --compare
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.worker:
        return worker(a)
    if a.compare:
        return compare(a)

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
