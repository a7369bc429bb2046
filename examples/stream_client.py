"""Stream speech to ``avguide serve`` and receive ARKit blendshape weights as they are computed.

    avguide serve &                                   # http://127.0.0.1:8000/
    python examples/stream_client.py speech.wav --out weights.csv [--realtime] [--url ws://...]

The protocol (``/api/stream``): a JSON ``start`` message, then binary messages of 16 kHz mono
signed 16-bit little-endian PCM (any sizes up to 64000 bytes; here 100 ms each), then a JSON
``finish``. The server answers ``ready`` (fps, look-ahead, the 52 names), then ``frames``
messages (``start`` index, ``weights``: one list of 52 values in [0, 1] per frame) while the
speech arrives, and ``done``. Needs only numpy, soundfile, soxr and websockets, not avguide.
"""

from __future__ import annotations

import argparse
import csv
import json
import threading
import time

import numpy as np
import soundfile as sf
import soxr
from websockets.sync.client import connect


def pcm16k(path: str) -> np.ndarray:
    """Any sound file -> 16 kHz mono int16 samples."""
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    audio = soxr.resample(audio.mean(axis=1), rate, 16000) if rate != 16000 else audio.mean(axis=1)
    return np.round(np.clip(audio, -1, 1) * 32767).astype("<i2")


def stream(url: str, pcm: np.ndarray, chunk_ms: float = 100, realtime: bool = False, on_frames=print) -> dict:
    """Send ``pcm`` in chunks; call ``on_frames(first_index, weights)`` for every block of frames.
    Returns the server's ``ready`` message (fps, names, look-ahead)."""
    chunk = int(16000 * chunk_ms / 1000)
    with connect(url, max_size=None) as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}))
        ready = json.loads(ws.recv())
        if ready["type"] != "ready":
            raise RuntimeError(ready.get("message", ready))

        def receive():  # frames arrive while we are still sending
            while True:
                msg = json.loads(ws.recv())
                if msg["type"] == "frames":
                    on_frames(msg["start"], msg["weights"])
                elif msg["type"] in ("done", "error"):
                    ready["end"] = msg
                    return

        reader = threading.Thread(target=receive)
        reader.start()
        t0 = time.perf_counter()
        for i, s in enumerate(range(0, len(pcm), chunk)):
            if realtime:  # as a microphone would: one chunk per chunk duration
                time.sleep(max(0.0, t0 + i * chunk_ms / 1000 - time.perf_counter()))
            ws.send(pcm[s: s + chunk].tobytes())
        ws.send(json.dumps({"type": "finish"}))
        reader.join()
    return ready


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("speech", help="a sound file (wav, flac, ogg, ...)")
    ap.add_argument("--url", default="ws://127.0.0.1:8000/api/stream")
    ap.add_argument("--out", help="write the weights as CSV (time, 52 columns)")
    ap.add_argument("--realtime", action="store_true", help="send at the speech's own pace")
    a = ap.parse_args()

    rows: list[list[float]] = []

    def on_frames(first: int, weights: list[list[float]]) -> None:
        rows.extend(weights)
        jaw = max(w[17] for w in weights)  # jawOpen
        print(f"frames {first}..{first + len(weights) - 1}  jawOpen up to {jaw:.2f}")

    ready = stream(a.url, pcm16k(a.speech), realtime=a.realtime, on_frames=on_frames)
    print(f"{len(rows)} frames at {ready['fps']} fps; look-ahead {1000 * ready['lookahead_s']:.1f} ms; "
          f"server: {ready['end']}")
    if a.out:
        with open(a.out, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["time_s", *ready["names"]])
            out.writerows([[round(i / ready["fps"], 4), *w] for i, w in enumerate(rows)])


if __name__ == "__main__":
    main()
