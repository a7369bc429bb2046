"""``avguide serve``'s arguments and a real server process (the tiny animator in place of the
shipped one), and ``examples/stream_client.py`` against a live server."""

from __future__ import annotations

import argparse
import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

httpx = pytest.importorskip("httpx", reason="the CLI tests need the httpx client")

pytest.importorskip("fastapi", reason="the studio needs fastapi and uvicorn (pip install fastapi uvicorn)")

from avguide.errors import BadInputError  # noqa: E402
from avguide.serve.cli import _serve_args, _serve_run  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    _serve_args(p)
    return p.parse_args(list(argv))


def test_defaults_listen_on_this_machine_only():
    a = _parse()
    assert (a.host, a.port, a.model) == ("127.0.0.1", 8000, "faceformer")


@pytest.mark.parametrize("argv,words", [
    (["--port", "0"], "--port 0"),
    (["--port", "70000"], "--port 70000"),
    (["--max-upload-mb", "0"], "--max-upload-mb"),
    (["--max-seconds", "-1"], "--max-seconds"),
    (["--max-streams", "0"], "--max-streams"),
])
def test_bad_arguments_are_one_line_errors_before_any_work(argv, words):
    with pytest.raises(BadInputError, match=words):
        _serve_run(_parse(*argv))


SERVER = """
import sys
sys.path.insert(0, {here!r})
import avguide.animate
from conftest import tiny_animator
avguide.animate.load_animator = lambda name: tiny_animator()  # the shipped model's stand-in
from avguide.serve.cli import _serve_args, _serve_run
import argparse
p = argparse.ArgumentParser()
_serve_args(p)
sys.exit(_serve_run(p.parse_args(sys.argv[1:])))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_runs_a_server_until_interrupted(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER.format(here=str(HERE)), "--port", str(port)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(600):  # bounded: 60 s
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.1)
        else:
            raise AssertionError("the server did not answer in 60 s")
        assert r.status_code == 200 and r.json()["subjects"] == ["alice", "bob"]
        assert "<title>avguide studio</title>" in httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert f"http://127.0.0.1:{port}/" in out


def test_example_stream_client_writes_the_streamed_weights(live_server, anim, tmp_path):
    from avguide.animate import speak_text
    from avguide.assets.head import load_head
    from avguide.export import solve_arkit

    speech = speak_text("The example client streams this sentence.")
    wav = tmp_path / "speech.wav"
    sf.write(wav, speech, 16000, subtype="FLOAT")
    out = tmp_path / "weights.csv"
    run = subprocess.run([sys.executable, str(REPO / "examples" / "stream_client.py"), str(wav), "--out", str(out),
                          "--url", live_server.ws_url], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr
    with open(out) as f:
        rows = list(csv.reader(f))
    weights = np.array(rows[1:], float)[:, 1:]
    n = round(len(speech) / 16000 * anim.fps)
    assert rows[0][1] == "eyeBlinkLeft" and weights.shape == (n, 52)
    import torch

    # the client sent 16-bit samples: the offline animation of the same 16-bit samples
    pcm = np.round(np.clip(speech, -1, 1) * 32767) / 32768.0
    with torch.no_grad():
        verts = anim.model.generate(torch.from_numpy(pcm.astype(np.float32))[None], torch.tensor([len(pcm)]),
                                    torch.from_numpy(anim.templates["alice"])[None], torch.tensor([0]))[0].numpy()
    want = solve_arkit(verts, anim.templates["alice"], load_head().blendshapes).weights
    assert np.abs(weights - want).max() < 1e-3
    assert f"{n} frames at" in run.stdout
