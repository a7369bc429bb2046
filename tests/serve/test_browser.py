"""The studio page in a real browser: Debian's headless Chromium driven by Playwright (the system
executable, no downloaded browser), against a live server on 127.0.0.1.

As a person would use it: the page loads and shows the head; a sentence is typed and said; the
lips differ between two moments of the utterance (screenshots) and the head shows the take's
glb weights at the audio's time; the four downloads work; a microphone recording (Chromium's fake
device), an audio upload and live streaming each animate; a bad upload shows the server's message.

Skips, saying why, where the ``playwright`` package or ``/usr/bin/chromium`` is missing
(``pip install playwright``; ``apt-get install -y chromium``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

CHROMIUM = os.environ.get("AVGUIDE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is not installed (pip install playwright)")
httpx = pytest.importorskip("httpx", reason="the browser tests read takes with httpx")

from avguide.assets.head import load_head  # noqa: E402
from avguide.export import read_arkit_csv  # noqa: E402

ARGS = ["--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",  # WebGL without a GPU
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",     # a fake microphone
        "--autoplay-policy=no-user-gesture-required"]
WAIT_MS = 120_000  # the longest any one step may take (bounded waits)
BACKGROUND = np.array([0x2A, 0x2E, 0x37])  # the viewer's clear colour


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 1200, "height": 760}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.errors = errors
    page.set_default_timeout(WAIT_MS)
    page.goto(live_server.url)
    page.wait_for_function("window.studio && window.studio.state === 'idle'")
    yield page
    context.close()


def _image(png: bytes) -> np.ndarray:
    import PIL.Image

    return np.asarray(PIL.Image.open(io.BytesIO(png)).convert("RGB")).astype(np.float64)


def _canvas(page) -> np.ndarray:
    return _image(page.locator("#viewer").screenshot())


def _say(page, text: str) -> dict:
    old = page.evaluate("window.studio.take && window.studio.take.id")
    page.fill("#text", text)
    page.click("#say")
    page.wait_for_function(f"window.studio.take && window.studio.take.id !== {json.dumps(old)} "
                           "&& ['ready', 'playing'].includes(window.studio.state)")
    return page.evaluate("window.studio.take")


def _lip_box(page) -> tuple[int, int, int, int]:
    """The lips' box on the page (CSS px, padded), from the head's lip vertices at rest."""
    head = load_head()
    lips = head.vertices[head.regions["lips"]].tolist()
    xy = np.asarray(page.evaluate("(pts) => window.studio.project(pts)", lips))
    x0, y0 = np.floor(xy.min(0) - 8).astype(int)
    x1, y1 = np.ceil(xy.max(0) + 8).astype(int)
    return x0, y0, x1, y1


def _shot(page, box) -> np.ndarray:
    x0, y0, x1, y1 = (float(v) for v in box)
    return _image(page.screenshot(clip={"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0}))


def test_page_loads_and_shows_the_head(page):
    img = _canvas(page)
    differs = np.abs(img - BACKGROUND).sum(-1) > 30  # not the clear colour: the head
    assert 0.1 < differs.mean() < 0.9
    h, w = differs.shape
    assert differs[h // 3: 2 * h // 3, w // 3: 2 * w // 3].mean() > 0.8  # in the middle of the view
    assert page.evaluate("window.studio.K") == 52
    assert page.errors == []


def test_typed_sentence_moves_the_lips_in_sync_with_the_take(page, live_server, tmp_path):
    take = _say(page, "Open wide, then close the lips.")
    csv = httpx.get(live_server.url + take["files"]["csv"], timeout=60)
    path = tmp_path / "take.csv"
    path.write_bytes(csv.content)
    weights, fps = read_arkit_csv(path, fps=take["fps"])
    # the two frames whose lips are farthest apart, by the rig: template + weights @ blendshapes
    head = load_head()
    lips = np.einsum("tk,kvc->tvc", weights, head.blendshapes[:, head.regions["lips"]])  # (T, n, 3)
    flat = lips.reshape(len(lips), -1)
    dist = np.linalg.norm(flat[:, None] - flat[None], axis=-1)
    i, j = np.unravel_index(dist.argmax(), dist.shape)
    box = _lip_box(page)

    page.evaluate(f"window.studio.seek({i / fps})")
    first = _shot(page, box)
    shown = np.asarray(page.evaluate("Array.from(window.studio.mesh.morphTargetInfluences)"))
    assert np.abs(shown - weights[i]).max() < 1e-4  # the glb's weights of the frame at that time
    page.evaluate(f"window.studio.seek({j / fps})")
    second = _shot(page, box)
    page.evaluate(f"window.studio.seek({i / fps})")
    again = _shot(page, box)
    assert np.abs(first - again).mean() < 0.5  # the same moment renders the same
    assert np.abs(first - second).mean() > 3.0  # two moments of the utterance: the lips differ
    # playing: the head follows the audio clock (within a few frames of its time)
    page.evaluate("window.studio.seek(0)")
    page.click("#play")
    page.wait_for_function("(a => !a.paused && a.currentTime > 0.3)(document.getElementById('audio'))")
    t, clock, shown = page.evaluate("""() => new Promise((resolve) => requestAnimationFrame(() => resolve([
        window.studio.shownAt, document.getElementById('audio').currentTime,
        Array.from(window.studio.mesh.morphTargetInfluences)])))""")

    def at(time):  # the take's weights at a time, linear between frames as the glb plays them
        f = min(max(time * fps, 0.0), len(weights) - 1)
        i0 = int(f)
        i1 = min(i0 + 1, len(weights) - 1)
        return weights[i0] * (1 - (f - i0)) + weights[i1] * (f - i0)

    assert 0.3 <= t <= clock <= t + 0.5  # the drawn frame shows the audio clock of its drawing
    assert np.abs(np.asarray(shown) - at(t)).max() < 1e-4  # ... with the glb's weights of that time
    assert np.abs(np.asarray(shown) - at(t + 8 / fps)).max() > 0.05  # (other moments differ)
    page.evaluate("document.getElementById('audio').pause()")
    assert page.errors == []


def _download(page, link: str, tmp_path: Path) -> bytes:
    with page.expect_download(timeout=WAIT_MS) as info:
        page.click(link)
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    return path.read_bytes()


def test_downloads_work(page, tmp_path):
    take = page.evaluate("window.studio.take") or _say(page, "Downloads.")
    glb = _download(page, "#dl-glb", tmp_path)
    magic, _, length = struct.unpack_from("<III", glb)
    assert magic == 0x46546C67 and length == len(glb)
    chunk_len = struct.unpack_from("<I", glb, 12)[0]
    gltf = json.loads(glb[20: 20 + chunk_len])
    assert len(gltf["meshes"][0]["extras"]["targetNames"]) == 52
    csv = _download(page, "#dl-csv", tmp_path).decode()
    assert csv.startswith("Timecode,BlendShapeCount,EyeBlinkLeft") and len(csv.splitlines()) == take["frames"] + 1
    wav = _download(page, "#dl-wav", tmp_path)
    audio, rate = sf.read(io.BytesIO(wav))
    assert rate == 16000 and abs(len(audio) / rate - take["seconds"]) < 1e-3
    mp4 = _download(page, "#dl-mp4", tmp_path)
    assert mp4[4:8] == b"ftyp" and len(mp4) > 1000


def test_microphone_recording_animates(page):
    old = page.evaluate("window.studio.take && window.studio.take.id")
    page.click("#record")
    page.wait_for_function("window.studio.state === 'recording'")
    page.wait_for_timeout(1500)
    page.click("#record")
    page.wait_for_function(f"window.studio.take && window.studio.take.id !== {json.dumps(old)} "
                           "&& ['ready', 'playing'].includes(window.studio.state)")
    take = page.evaluate("window.studio.take")
    assert take["title"] == "microphone" and 0.8 < take["seconds"] < 6.0  # the recording's length


def test_audio_upload_animates(page, tmp_path):
    t = np.arange(int(1.7 * 22050)) / 22050
    path = tmp_path / "tone.wav"
    sf.write(path, 0.3 * np.sin(2 * np.pi * 200 * t) * (1 + np.sin(2 * np.pi * 4 * t)), 22050)
    old = page.evaluate("window.studio.take && window.studio.take.id")
    page.set_input_files("#file", str(path))
    page.click("#upload")
    page.wait_for_function(f"window.studio.take && window.studio.take.id !== {json.dumps(old)} "
                           "&& ['ready', 'playing'].includes(window.studio.state)")
    take = page.evaluate("window.studio.take")
    assert take["title"] == "tone.wav" and abs(take["seconds"] - 1.7) < 0.01


def test_bad_upload_shows_the_servers_message(page, tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are notes, not sound\n" * 20)
    page.set_input_files("#file", str(path))
    page.click("#upload")
    page.wait_for_function("document.getElementById('status').classList.contains('error')")
    assert "not a readable audio file" in page.text_content("#status")
    assert page.errors == ["Failed to load resource: the server responded with a status of 415 "
                           "(Unsupported Media Type)"]
    page.errors.clear()
    page.evaluate("window.studio.seek(0)")  # still usable
    assert page.evaluate("window.studio.state") in ("ready", "idle")


def test_live_streaming_drives_the_head(page):
    page.click("#live")
    page.wait_for_function("window.studio.state === 'live'")
    # the fake microphone beeps: streamed frames arrive and move the head
    page.wait_for_function("window.studio.liveWeights && window.studio.liveWeights.some((w) => w > 0)")
    page.wait_for_function("window.studio.mesh.morphTargetInfluences.some((w) => w > 0)")  # drawn
    page.click("#live")
    page.wait_for_function("window.studio.state !== 'live'")
    assert "ended" in page.text_content("#status")
    assert page.errors == []
