"""The studio's HTTP API on a live server (127.0.0.1): takes from text and from uploads with their
files checked against an independent offline animation, static assets served from the package,
and every bad request answered with a 4xx and a message while the server keeps serving."""

from __future__ import annotations

import io
import json
import re
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

httpx = pytest.importorskip("httpx", reason="the API tests need the httpx client")

pytest.importorskip("fastapi", reason="the studio needs fastapi and uvicorn (pip install fastapi uvicorn)")

from avguide.assets.arkit import ARKIT_NAMES  # noqa: E402
from avguide.assets.head import load_head  # noqa: E402
from avguide.export import read_arkit_csv, solve_arkit  # noqa: E402

TIMEOUT = 120
STATIC = Path(__file__).resolve().parents[2] / "avguide" / "serve" / "static"


@pytest.fixture(scope="module")
def client(live_server):
    with httpx.Client(base_url=live_server.url, timeout=TIMEOUT) as c:
        yield c


def _offline_weights(anim, audio: np.ndarray, subject: str) -> np.ndarray:
    """ARKit weights of ``model.generate`` on the whole clip: (T, 52)."""
    index = anim.train_subjects.index(subject)
    a = torch.from_numpy(audio)[None]
    with torch.no_grad():
        verts = anim.model.generate(a, torch.tensor([a.shape[1]]), torch.from_numpy(anim.templates[subject])[None],
                                    torch.tensor([index]))[0].numpy()
    return solve_arkit(verts, anim.templates[subject], load_head().blendshapes).weights


def _glb_json(data: bytes) -> dict:
    magic, version, length = struct.unpack_from("<III", data)
    assert magic == 0x46546C67 and version == 2 and length == len(data)
    chunk_len, chunk_type = struct.unpack_from("<II", data, 12)
    assert chunk_type == 0x4E4F534A
    return json.loads(data[20: 20 + chunk_len])


def _check_take(client, anim, take: dict, subject: str, tmp_path: Path, speech: np.ndarray) -> None:
    """Every file of a take is there and says what the offline animation of ``speech`` (the
    16 kHz float samples the server should have animated) says."""
    wav = client.get(take["files"]["wav"])
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    audio, rate = sf.read(io.BytesIO(wav.content), dtype="float32")
    assert rate == 16000 and len(audio) == len(speech) and abs(len(audio) / 16000 - take["seconds"]) < 1e-3
    assert np.abs(audio - speech).max() < 1e-4  # 16-bit
    n_frames = round(len(audio) / 16000 * anim.fps)
    assert take["frames"] == n_frames and take["fps"] == anim.fps and take["subject"] == subject

    csv = client.get(take["files"]["csv"])
    assert csv.status_code == 200 and "attachment" in csv.headers["content-disposition"]
    (tmp_path / "take.csv").write_bytes(csv.content)
    weights, fps = read_arkit_csv(tmp_path / "take.csv", fps=anim.fps)
    assert weights.shape == (n_frames, 52)
    np.testing.assert_allclose(weights, _offline_weights(anim, speech, subject), atol=1e-4)  # CSV: 6 decimals

    glb = client.get(take["files"]["glb"])
    assert glb.status_code == 200 and glb.headers["content-type"] == "model/gltf-binary"
    gltf = _glb_json(glb.content)
    assert gltf["meshes"][0]["extras"]["targetNames"] == list(ARKIT_NAMES)
    times = gltf["accessors"][gltf["animations"][0]["samplers"][0]["input"]]
    assert times["count"] == n_frames and abs(times["max"][0] - (n_frames - 1) / anim.fps) < 1e-4


def test_say_makes_a_take_whose_files_match_the_offline_animation(client, anim, tmp_path):
    r = client.post("/api/say", json={"text": "The studio speaks, then animates.", "subject": "bob"})
    assert r.status_code == 200, r.text
    take = r.json()
    assert take["title"] == "The studio speaks, then animates."
    from avguide.animate import speak_text

    _check_take(client, anim, take, "bob", tmp_path, speak_text("The studio speaks, then animates."))
    assert client.get(f"/api/jobs/{take['id']}").json() == take


def test_upload_makes_a_take(client, anim, tmp_path):
    from avguide.speech.espeak import Voice, speak

    audio = speak("An uploaded recording.", Voice("f1")).audio
    buf = io.BytesIO()
    sf.write(buf, audio, 16000, format="WAV", subtype="FLOAT")  # exact samples
    r = client.post("/api/animate", params={"name": "recording.wav"}, content=buf.getvalue(),
                    headers={"content-type": "audio/wav"})
    assert r.status_code == 200, r.text
    take = r.json()
    assert take["title"] == "recording.wav"
    _check_take(client, anim, take, "alice", tmp_path, audio)


def test_upload_of_any_rate_and_channels_is_converted(client, anim):
    import soxr

    seconds = 1.3
    t = np.arange(int(seconds * 44100)) / 44100
    tone = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))  # 44.1 kHz
    buf = io.BytesIO()
    sf.write(buf, np.stack([tone, 0.5 * tone], 1), 44100, format="FLAC")  # stereo flac
    r = client.post("/api/animate", content=buf.getvalue(), headers={"content-type": "audio/flac"})
    assert r.status_code == 200, r.text
    take = r.json()
    wav, rate = sf.read(io.BytesIO(client.get(take["files"]["wav"]).content), dtype="float32")
    mono16k = soxr.resample(0.75 * tone, 44100, 16000, quality="HQ")  # channels averaged, resampled
    assert rate == 16000 and len(wav) == len(mono16k) and np.abs(wav - mono16k).max() < 2e-3
    assert take["frames"] == round(len(mono16k) / 16000 * anim.fps)


def test_mp4_is_rendered_on_request(client):
    take = client.post("/api/say", json={"text": "Video."}).json()
    r = client.get(take["files"]["mp4"])
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert r.content[4:8] == b"ftyp" and len(r.content) > 1000
    assert client.get(take["files"]["mp4"]).content == r.content  # rendered once, then served


def _wav_bytes(seconds: float, rate: int = 16000, amplitude: float = 0.3) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


BAD_REQUESTS = [
    # (method, url, kwargs, status, words in the message)
    ("post", "/api/say", {"content": b"{not json"}, 400, "must be JSON"),
    ("post", "/api/say", {"json": {"text": ""}}, 400, "non-empty string"),
    ("post", "/api/say", {"json": {"txt": "hello"}}, 400, "non-empty string"),
    ("post", "/api/say", {"json": ["hello"]}, 400, "non-empty string"),
    ("post", "/api/say", {"json": {"text": "x" * 1001}}, 400, "at most 1000"),
    ("post", "/api/say", {"json": {"text": "hello", "subject": "carol"}}, 400, "carol"),
    ("post", "/api/say", {"json": {"text": "hello", "subject": 3}}, 400, "subject"),
    ("post", "/api/say", {"json": {"text": "hello", "voice": "robot"}}, 400, "robot"),
    ("post", "/api/animate", {"content": b"plain text, not audio", "headers": {"content-type": "text/plain"}}, 415,
     "Content-Type 'text/plain'"),
    ("post", "/api/animate", {"content": b"GIF89a" + b"\0" * 400, "headers": {"content-type": "audio/wav"}}, 415,
     "not a readable audio file"),
    ("post", "/api/animate", {"content": b"", "headers": {"content-type": "audio/wav"}}, 400, "empty"),
    ("post", "/api/animate", {"content": b"\0" * (2 ** 20 + 10), "headers": {"content-type": "audio/wav"}}, 413,
     "the limit is 1048576"),
    ("post", "/api/animate", {"content": _wav_bytes(25.0, 8000), "headers": {"content-type": "audio/wav"}}, 413,
     "at most 20 s"),
    ("post", "/api/animate", {"content": _wav_bytes(1.0, amplitude=0.0), "headers": {"content-type": "audio/wav"}},
     400, "silent"),
    ("post", "/api/animate", {"content": _wav_bytes(0.05), "headers": {"content-type": "audio/wav"}}, 400,
     "too short"),
    ("post", "/api/animate?subject=carol", {"content": _wav_bytes(1.0), "headers": {"content-type": "audio/wav"}},
     400, "carol"),
    ("get", "/api/jobs/0123456789abcdef", {}, 404, "no take"),
    ("get", "/api/head.glb?subject=carol", {}, 400, "carol"),
]


@pytest.mark.parametrize("method,url,kwargs,status,words", BAD_REQUESTS,
                         ids=[f"{b[3]}-{b[4][:24]}" for b in BAD_REQUESTS])
def test_bad_requests_get_a_4xx_with_a_message(client, method, url, kwargs, status, words):
    r = getattr(client, method)(url, **kwargs)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    assert client.get("/api/info").status_code == 200  # still serving


def test_oversized_upload_without_a_declared_length_is_refused(live_server):
    def body():  # chunked transfer: the size shows only while reading
        for _ in range(40):
            yield b"\0" * 65536
    with httpx.Client(base_url=live_server.url, timeout=TIMEOUT) as c:
        r = c.post("/api/animate", content=body(), headers={"content-type": "audio/wav"})
        assert r.status_code == 413 and "the limit is 1048576" in r.json()["error"]
        assert c.post("/api/say", json={"text": "Still serving."}).status_code == 200


def test_unknown_file_of_a_take_is_404(client):
    take = client.post("/api/say", json={"text": "Files."}).json()
    r = client.get(f"/api/jobs/{take['id']}/take.npy")
    assert r.status_code == 404 and "take.glb" in r.json()["error"]


def test_several_clients_at_once(live_server, anim):
    texts = ["First client.", "The second client speaks a little longer.", "Third.", "And a fourth one."]
    results: list = [None] * len(texts)

    def one(i):
        try:
            with httpx.Client(base_url=live_server.url, timeout=TIMEOUT) as c:
                take = c.post("/api/say", json={"text": texts[i]}).json()
                wav = c.get(take["files"]["wav"]).content
                results[i] = (take, sf.read(io.BytesIO(wav))[0])
        except BaseException as e:  # reported below
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    from avguide.animate import speak_text

    assert all(isinstance(r, tuple) for r in results), results
    for text, (take, audio) in zip(texts, results):
        assert take["title"] == text
        assert len(audio) == len(speak_text(text))  # each got its own speech
    # the store keeps the last keep_jobs (4) takes: all four still there
    assert len({take["id"] for take, _ in results}) == len(texts)


def test_info_and_rest_head(client, anim):
    info = client.get("/api/info").json()
    assert info["subjects"] == anim.train_subjects and info["fps"] == anim.fps and info["streaming"]
    assert info["names"] == list(ARKIT_NAMES) and info["limits"]["max_upload_bytes"] == 2 ** 20
    assert 0 < info["lookahead_s"] <= 0.1
    gltf = _glb_json(client.get("/api/head.glb", params={"subject": "bob"}).content)
    assert gltf["accessors"][gltf["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]["count"] == 4742


def test_page_and_every_asset_it_names_are_served_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    importmap = json.loads(re.search(r'<script type="importmap">(.*?)</script>', html, re.S).group(1))["imports"]
    assert importmap["three"] == "/static/vendor/three/three.module.min.js"
    urls = set(re.findall(r'(?:src|href)="(/static/[^"]+)"', html)) | {importmap["three"]}
    js = client.get("/static/studio.js").text
    urls |= {importmap["three/addons/"] + m for m in re.findall(r"from 'three/addons/([^']+)'", js)}
    urls |= set(re.findall(r"'(/static/[^']+\.js)'", js))
    assert len(urls) >= 6
    for url in sorted(urls):
        r = client.get(url)
        assert r.status_code == 200 and len(r.content) > 100, url
    # nothing is fetched from outside the server: no absolute URL in the page or its scripts
    for path in [STATIC / "index.html", STATIC / "studio.js", STATIC / "pcm-worklet.js"]:
        assert not re.search(r"(?:src|href|import|from|fetch|url)\W+(?:https?:)?//", path.read_text()), path
    found = {}
    for path in (STATIC / "vendor" / "three").rglob("*.js"):  # three's own modules import only relatively
        text = path.read_text()
        found[path.name] = re.findall(r"""(?:^|;)\s*(?:import|export)\b[^;'"]*?from\s*['"]([^'"]+)['"]""", text, re.M)
        for spec in found[path.name]:
            assert spec.startswith(".") or spec == "three", (path, spec)
    assert "./three.core.min.js" in found["three.module.min.js"]  # the pattern does find imports
    assert "../utils/BufferGeometryUtils.js" in found["GLTFLoader.js"]
    assert (STATIC / "vendor" / "three" / "LICENSE").read_text().startswith("The MIT License")
