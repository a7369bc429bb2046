"""/api/stream: streamed frames equal the offline animation of the same speech, arrive while the
speech is still coming, and every protocol error is a close with a 44xx code and a message while
the server keeps serving."""

from __future__ import annotations

import contextlib
import json
import socket
import threading

import numpy as np
import pytest
import torch

websockets = pytest.importorskip("websockets", reason="the stream tests need the websockets client")
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

pytest.importorskip("fastapi", reason="the studio needs fastapi and uvicorn (pip install fastapi uvicorn)")

from avguide.assets.head import load_head  # noqa: E402
from avguide.export import solve_arkit  # noqa: E402
from avguide.serve.engine import ArkitProjector  # noqa: E402
from avguide.serve.stream import StreamSession  # noqa: E402

TIMEOUT = 60  # seconds any one receive may wait (bounded loops)
VERTEX_TOL = 1e-4  # metres (0.1 mm): float rounding of the streamed vs the batched computation
WEIGHT_TOL = 1e-3  # ARKit weights of those vertices (5 decimals sent)


def _speech(text: str) -> np.ndarray:
    """espeak-ng speech as the int16 samples a client sends."""
    from avguide.speech.espeak import Voice, speak

    audio = speak(text, Voice("m1")).audio
    return np.round(np.clip(audio, -1, 1) * 32767).astype("<i2")


def _offline(anim, pcm: np.ndarray, subject: str) -> np.ndarray:
    """``model.generate`` on the whole clip (the samples the server decodes): (T, V, 3)."""
    audio = torch.from_numpy(pcm.astype(np.float32) / 32768.0)[None]
    index = anim.train_subjects.index(subject)
    with torch.no_grad():
        return anim.model.generate(audio, torch.tensor([audio.shape[1]]),
                                   torch.from_numpy(anim.templates[subject])[None],
                                   torch.tensor([index]))[0].numpy()


def _stream(url: str, pcm: np.ndarray, chunks: list[int], start: dict) -> dict:
    """Send ``start``, the PCM in chunks of the given sizes (samples), ``finish``; gather every
    reply. Returns ready, frames (weights, vertices, (start, count, audio_s)) in order, done."""
    out = {"weights": [], "vertices": [], "starts": []}
    with connect(url, max_size=None, open_timeout=TIMEOUT) as ws:
        ws.send(json.dumps(start))
        out["ready"] = json.loads(ws.recv(timeout=TIMEOUT))
        pos = 0
        for n in chunks:
            ws.send(pcm[pos: pos + n].tobytes())
            pos += n
        assert pos == len(pcm)
        ws.send(json.dumps({"type": "finish"}))
        while True:
            msg = ws.recv(timeout=TIMEOUT)
            if isinstance(msg, bytes):
                out["vertices"].append(np.frombuffer(msg, "<f4").reshape(-1, ready_v(out), 3))
                continue
            msg = json.loads(msg)
            if msg["type"] == "done":
                out["done"] = msg
                break
            assert msg["type"] == "frames", msg
            out["starts"].append((msg["start"], msg["count"], msg["audio_s"]))
            out["weights"].append(np.asarray(msg["weights"], np.float32))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd.code == 1000
    return out


def _even(n: int, size: int = 4000) -> list[int]:
    """Chunk sizes (samples) of ``size`` covering ``n`` samples."""
    return [size] * (n // size) + ([n % size] if n % size else [])


def ready_v(out: dict) -> int:
    return out["ready"]["n_vertices"]


def _check_equal(anim, got: dict, pcm: np.ndarray, subject: str) -> None:
    head = load_head()
    offline = _offline(anim, pcm, subject)
    weights = np.concatenate(got["weights"])
    assert got["done"]["frames"] == len(offline) == len(weights) == round(len(pcm) / 16000 * anim.fps)
    # frames come in order, each block right after the previous one
    assert [s for s, _, _ in got["starts"]] == list(np.cumsum([0] + [c for _, c, _ in got["starts"]])[:-1])
    fit = solve_arkit(offline, anim.templates[subject], head.blendshapes)
    assert np.abs(weights - fit.weights).max() < WEIGHT_TOL
    assert weights.std(0).max() > 0.05  # the weights move: the comparison is not of constants
    if got["vertices"]:
        verts = np.concatenate(got["vertices"])
        assert np.abs(verts - offline).max() < VERTEX_TOL


def test_streamed_frames_equal_offline_animation(live_server, anim):
    pcm = _speech("Streaming speech arrives in pieces, and the face follows it.")
    rng = np.random.default_rng(0)
    sizes = []
    while sum(sizes) < len(pcm):
        sizes.append(int(min(rng.integers(1, 6000), len(pcm) - sum(sizes))))
    got = _stream(live_server.ws_url, pcm, sizes, {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le",
                                                   "subject": "bob", "vertices": True})
    assert got["ready"]["subject"] == "bob" and got["ready"]["fps"] == anim.fps
    assert len(got["ready"]["names"]) == 52
    _check_equal(anim, got, pcm, "bob")
    # streamed, not buffered: each block of frames was sent in reply to a chunk, as soon as the
    # speech up to its last frame's time + the look-ahead had arrived (within a mel hop and the
    # frame's own features), and none before its own speech
    lookahead = got["ready"]["lookahead_s"]
    for first, count, audio_s in got["starts"][:-1]:
        last_time = (first + count - 1) / anim.fps
        assert last_time <= audio_s <= last_time + lookahead + 0.01 + 2 / anim.fps
    assert sum(c for _, c, s in got["starts"] if s < len(pcm) / 16000) > 0.5 * got["done"]["frames"]


def test_several_streams_at_once_each_equal_their_offline_animation(live_server, anim):
    texts = ["One voice.", "A second, longer sentence to animate.", "Three streams at once."]
    pcms = [_speech(t) for t in texts]
    results: list[dict | BaseException] = [None] * len(texts)

    def client(i):
        try:
            results[i] = _stream(live_server.ws_url, pcms[i], _even(len(pcms[i]), 1600), {"type": "start"})
        except BaseException as e:  # reported below
            results[i] = e

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    for pcm, got in zip(pcms, results):
        assert isinstance(got, dict), got
        assert got["vertices"] == []  # not asked for
        _check_equal(anim, got, pcm, "alice")


def _error(url: str, messages: list) -> tuple[dict, int, str]:
    """Send messages; the error message and close code/reason the server answers with."""
    with connect(url, max_size=None, open_timeout=TIMEOUT) as ws:
        replies = []
        try:
            for m in messages:
                ws.send(m)
        except ConnectionClosed:
            pass  # closed before all were sent (a refused stream): the replies are still queued
        try:
            for _ in range(100):  # bounded
                replies.append(ws.recv(timeout=TIMEOUT))
        except ConnectionClosed as e:
            errors = [json.loads(r) for r in replies if isinstance(r, str) and json.loads(r)["type"] == "error"]
            assert len(errors) == 1, replies
            return errors[0], e.rcvd.code, e.rcvd.reason
    raise AssertionError("the server did not close the connection")


START = json.dumps({"type": "start"})


MALFORMED = [
    (["not json"], 4400, "JSON"),
    ([json.dumps(["start"])], 4400, "unknown message type"),
    ([json.dumps({"type": "begin"})], 4400, "unknown message type"),
    ([b"\x00\x01" * 100], 4400, "before 'start'"),
    ([json.dumps({"type": "finish"})], 4400, "before 'start'"),
    ([json.dumps({"type": "start", "sample_rate": 44100})], 4415, "16000 Hz"),
    ([json.dumps({"type": "start", "encoding": "pcm_f32le"})], 4415, "pcm_s16le"),
    ([json.dumps({"type": "start", "subject": "carol"})], 4400, "carol"),
    ([json.dumps({"type": "start", "vertices": "yes"})], 4400, "vertices"),
    ([json.dumps({"type": "start", "rate": 16000})], 4400, "unknown field"),
    ([START, START], 4400, "twice"),
    ([START, b"\x00\x01\x02"], 4400, "even number"),
    ([START, b"\x00" * 16002], 4413, "at most 16000"),
]


@pytest.mark.parametrize("messages,code,words", MALFORMED)
def test_malformed_messages_close_with_a_4xx_code_and_a_message(live_server, messages, code, words):
    import httpx

    error, got_code, reason = _error(live_server.ws_url, messages)
    assert error["code"] == got_code == code
    assert words in error["message"] and reason and reason in error["message"]
    assert httpx.get(f"{live_server.url}/api/info", timeout=TIMEOUT).status_code == 200  # still serving


def test_server_streams_after_every_protocol_error(live_server, anim):
    for messages, code, _ in MALFORMED:
        assert _error(live_server.ws_url, messages)[1] == code
    pcm = _speech("Still here.")
    got = _stream(live_server.ws_url, pcm, _even(len(pcm)), {"type": "start"})
    _check_equal(anim, got, pcm, "alice")


def _streams_open(server) -> int:
    import httpx

    return httpx.get(f"{server.url}/api/info", timeout=TIMEOUT).json()["streams_open"]


def _until_no_stream_is_open(server) -> None:
    """Wait (bounded: 20 s) until the server has noticed every earlier stream end."""
    for _ in range(200):
        if _streams_open(server) == 0:
            return
        threading.Event().wait(0.1)
    raise AssertionError("streams that ended were never released")


def test_streams_beyond_the_limit_are_refused_with_4429(live_server):
    limit = 4  # live_server's max_streams
    _until_no_stream_is_open(live_server)
    with contextlib.ExitStack() as stack:
        for _ in range(limit):  # each is really open and started
            ws = stack.enter_context(connect(live_server.ws_url, open_timeout=TIMEOUT))
            ws.send(START)
            assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "ready"
        assert _streams_open(live_server) == limit
        error, code, _ = _error(live_server.ws_url, [START])
        assert code == error["code"] == 4429 and "streams are open" in error["message"]
    _until_no_stream_is_open(live_server)  # closed streams are counted out


def test_a_client_vanishing_mid_stream_frees_its_place(live_server):
    _until_no_stream_is_open(live_server)
    for _ in range(6):  # more than max_streams (4): vanished streams must be let go
        with contextlib.suppress(ConnectionClosed, OSError), connect(live_server.ws_url, open_timeout=TIMEOUT) as ws:
            ws.send(START)
            assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "ready"
            ws.send(np.zeros(8000, "<i2").tobytes())
            ws.socket.shutdown(socket.SHUT_RDWR)  # gone without 'finish' or a close frame
        _until_no_stream_is_open(live_server)


def test_session_memory_is_constant_for_any_length(anim):
    from avguide.serve.engine import Engine

    session = StreamSession(Engine(anim))
    session.handle(text=START)
    chunk = (np.random.default_rng(0).standard_normal(1600) * 3000).astype("<i2").tobytes()
    sizes = []
    for i in range(250):  # 25 s
        session.handle(data=chunk)
        if i in (50, 249):
            f = session.stream.features
            sizes.append((len(f.samples), len(f.mel), len(f.feats), [tuple(h.shape) for h in f.history],
                          session.stream.decoding.stepper.caches[0].k.shape[2]))
    assert sizes[0] == sizes[1]
    assert abs(session.frames - (25.0 - session.stream.lookahead_s) * anim.fps) <= 2


def test_projector_equals_solve_arkit():
    head = load_head()
    rng = np.random.default_rng(0)
    w = rng.uniform(-0.2, 1.2, (7, 52))  # some outside the box: the bounds are active
    verts = head.vertices + np.einsum("tk,kvc->tvc", w, head.blendshapes)
    verts += rng.normal(0, 1e-4, verts.shape)  # off the rig
    got = ArkitProjector(head.blendshapes)(verts, head.vertices)
    want = solve_arkit(verts, head.vertices, head.blendshapes).weights
    assert got.shape == (7, 52) and np.abs(got - want).max() < 5e-5  # float32 projections
    assert (got == 0).any() and (got == 1).any()
    assert ArkitProjector(head.blendshapes)(verts[:0], head.vertices).shape == (0, 52)


def test_projector_warm_start_and_folded_readout_equal_the_plain_solve(anim):
    """The stream's shortcuts: each frame's QP warm-started from the frame before equals a fresh
    solve; the weights straight from the decoder outputs (the readout folded into the projection)
    equal those of the meshes they read out to, within the float32 rounding of the meshes."""
    from avguide.animators.stream import AnimationStream, affine_readout
    from avguide.serve.engine import Engine

    head = load_head()
    rng = np.random.default_rng(1)
    t = np.linspace(0, 3, 40)[:, None]
    w = 0.5 + 0.8 * np.sin(t * rng.uniform(0.5, 3, 52) + rng.uniform(0, 6, 52))  # (40, 52), beyond both bounds
    verts = head.vertices + np.einsum("tk,kvc->tvc", w, head.blendshapes) + rng.normal(0, 1e-4, (40, head.num_vertices, 3))
    projector = ArkitProjector(head.blendshapes)
    active = projector.new_active()
    blocks = [verts[i: i + 3] for i in range(0, 40, 3)]  # the same blocks: the same float32 projections
    cold = np.concatenate([projector(v, head.vertices) for v in blocks])
    warm = np.concatenate([projector(v, head.vertices, active) for v in blocks])
    assert (cold == 0).any() and (cold == 1).any()
    assert np.abs(warm - cold).max() < 1e-6

    engine = Engine(anim)
    assert engine.projector.fold is not None and affine_readout(anim.model) is not None
    pcm = _speech("Folded weights.").astype(np.float32) / 32768.0
    meshes, hidden = AnimationStream(anim.model, engine.templates["alice"], 0), AnimationStream(anim.model, engine.templates["alice"], 0)
    got_v = [meshes.push(pcm[i: i + 4000]) for i in range(0, len(pcm), 4000)] + [meshes.finish()]
    got_h = [hidden.push(pcm[i: i + 4000], hidden=True) for i in range(0, len(pcm), 4000)] + [hidden.finish(hidden=True)]
    assert [len(v) for v in got_v] == [len(h) for h in got_h]
    v, h = torch.cat(got_v), torch.cat(got_h)  # (T, V, 3), (T, D)
    from_meshes = engine.projector(v, engine.templates["alice"])
    from_hidden = engine.projector.from_hidden(h)
    assert from_meshes.std(0).max() > 0.05 and np.abs(from_hidden - from_meshes).max() < 1e-4
    exact = solve_arkit(v.numpy(), engine.templates["alice"], head.blendshapes).weights  # float64 fit
    assert np.abs(from_hidden - exact).max() < 2e-5  # closer than the float32 projections of the meshes
    with pytest.raises(ValueError, match="readout"):
        ArkitProjector(head.blendshapes).from_hidden(h)


@pytest.mark.parametrize("kind", ["faceformer", "codetalker"])
def test_session_weights_with_and_without_vertices_agree(anim, anim_codetalker, kind):
    """Without vertices the session computes the weights from the decoder outputs (no meshes);
    with them, from the meshes: the same weights within the rounding of the meshes."""
    from avguide.serve.engine import Engine

    engine = Engine(anim if kind == "faceformer" else anim_codetalker)
    pcm = _speech("With and without the meshes.")
    weights = {}
    for vertices in (False, True):
        session = StreamSession(engine)
        session.handle(text=json.dumps({"type": "start", "vertices": vertices}))
        assert session.hidden is not vertices
        out = [m for i in range(0, len(pcm), 1600) for m in session.handle(data=pcm[i: i + 1600].tobytes())]
        out += session.handle(text=json.dumps({"type": "finish"}))
        weights[vertices] = np.concatenate([json.loads(m)["weights"] for m in out
                                            if isinstance(m, str) and json.loads(m)["type"] == "frames"])
    assert weights[False].shape == weights[True].shape and weights[False].std(0).max() > 0.05
    assert np.abs(weights[False] - weights[True]).max() <= 1e-4
