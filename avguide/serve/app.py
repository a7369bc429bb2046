"""The studio's web application (FastAPI): one page, a JSON API, a streaming WebSocket.

Endpoints (every error is a JSON ``{"error": "..."}`` with a 4xx status; the server keeps serving):

* ``GET /``: the studio page (``static/index.html``); ``/static/...`` its scripts, styles and
  the vendored three.js.
* ``GET /api/info``: fps, subjects, voices, look-ahead, the 52 ARKit names, the streams open
  now and the limits.
* ``GET /api/head.glb?subject=NAME``: the subject's face at rest, the page's first head.
* ``POST /api/say``: JSON ``{"text": "...", "subject": null, "voice": null}`` -> a take
  (espeak-ng speech; ``voice`` one of ``/api/info``'s voices).
* ``POST /api/animate?subject=NAME``: the body is one audio file (wav, flac, ogg or mp3; any rate
  and channel count) -> a take.
* ``GET /api/jobs/{id}``: a take's JSON; ``GET /api/jobs/{id}/speech.wav | take.glb |
  take_arkit.csv | take_arkit.json | take.mp4``: its files (the mp4 is rendered on the first
  request).
* ``WS /api/stream``: streaming animation (:mod:`avguide.serve.stream` gives the protocol).

A take's JSON: ``{"id", "title", "subject", "fps", "frames", "seconds", "arkit_rms_mm",
"files": {"wav"|"glb"|"csv"|"json"|"mp4": url}}``.

Status codes: 400 malformed input (bad JSON, empty or too long text, unknown subject, silent
audio), 404 unknown take or file, 413 too large (upload bytes or audio seconds), 415 not a
readable audio file.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from avguide import AUDIO_RATE
from avguide.assets.arkit import ARKIT_NAMES
from avguide.errors import AvguideError
from avguide.serve.engine import Engine
from avguide.serve.jobs import FILES, JobStore
from avguide.serve.stream import BUSY, StreamError, StreamSession

STATIC = Path(__file__).with_name("static")
SILENCE_RMS = 1e-4
"""Audio quieter than this (RMS, full scale 1) is refused as silent, as by ``avguide animate``."""
AUDIO_TYPES = ("audio/", "application/octet-stream")
"""Content-Type prefixes an upload may declare (or none)."""


@dataclass(frozen=True)
class Limits:
    """What one request may ask for.

    Attributes:
        max_upload_bytes: largest audio upload (413 above).
        max_seconds: longest speech an upload or a text may give (413 above).
        max_text_chars: longest text to say (400 above).
        max_chunk_bytes: largest binary WebSocket message (close 4413 above).
        max_streams: WebSocket streams at once (close 4429 above).
        keep_jobs: takes kept on disk (the oldest is removed first).
        busy_jobs: takes animated at once; more requests wait their turn.
    """

    max_upload_bytes: int = 20 * 2 ** 20
    max_seconds: float = 60.0
    max_text_chars: int = 1000
    max_chunk_bytes: int = 64000
    max_streams: int = 8
    keep_jobs: int = 8
    busy_jobs: int = 1


def _decode_audio(data: bytes) -> np.ndarray:
    """An audio file's bytes -> (L,) float32 16 kHz mono.

    Raises:
        HTTPException: 415 not a file libsndfile reads, 400 empty or non-finite.
    """
    import soundfile as sf
    import soxr

    try:
        wav, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # (L, channels)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as e:
        reason = re.sub(r"^Error opening <[^>]*>: ", "", str(e))[:160]  # libsndfile names the BytesIO
        raise HTTPException(415, f"not a readable audio file (wav, flac, ogg or mp3): {reason}") from None
    if wav.shape[0] == 0 or not np.isfinite(wav).all():
        raise HTTPException(400, "the audio is empty or has NaN/infinite samples")
    wav = wav.mean(axis=1)
    if rate != AUDIO_RATE:
        wav = soxr.resample(wav, rate, AUDIO_RATE, quality="HQ")
    return np.ascontiguousarray(wav, dtype=np.float32)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (413 above; a longer body is read to its end, up
    to a bound, so the client sees the answer instead of a reset connection)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > 4 * limit + 2 ** 20:
        raise HTTPException(413, f"upload of {int(declared)} bytes; the limit is {limit}")
    body, size = bytearray(), 0
    async for part in request.stream():
        size += len(part)
        if size <= limit:
            body += part
        elif size > 4 * limit + 2 ** 20:
            break
    if size > limit:
        raise HTTPException(413, f"upload of {size if size <= 4 * limit + 2 ** 20 else 'over ' + str(size)} "
                                 f"bytes; the limit is {limit}")
    return bytes(body)


def create_app(anim: Any, limits: Limits = Limits(), head: Any = None) -> FastAPI:
    """The studio application for one animator.

    Args:
        anim: a loaded animator of the embedded head (see :class:`avguide.serve.engine.Engine`).
        limits: request limits.
        head: the head asset (default: the embedded one).
    Returns:
        The FastAPI app (run it with uvicorn: :func:`avguide.serve.serve`).
    """
    engine = Engine(anim, head)
    jobs = JobStore(engine, limits.keep_jobs)
    busy = asyncio.Semaphore(limits.busy_jobs)
    streams = {"open": 0}

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        jobs.close()

    app = FastAPI(title="avguide studio", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine, app.state.jobs, app.state.limits = engine, jobs, limits

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=400)

    def _make_take(audio: np.ndarray, subject: str | None, title: str) -> dict:
        """Animate and store (in a worker thread); the take's JSON."""
        try:
            take = engine.animate(audio, subject)
        except AvguideError as e:
            raise HTTPException(400, str(e)) from None
        return jobs.add(take, title).info

    async def _take(audio: np.ndarray, subject: str | None, title: str) -> dict:
        """Check the speech, then animate it when a place is free (waiting requests hold no
        worker thread, so streams keep theirs); the take's JSON."""
        seconds = len(audio) / AUDIO_RATE
        if seconds > limits.max_seconds:
            raise HTTPException(413, f"{seconds:.1f} s of speech; the studio animates at most {limits.max_seconds:g} s")
        if seconds < 0.1:
            raise HTTPException(400, f"{seconds:.3f} s of speech is too short (at least 0.1 s)")
        rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
        if rms < SILENCE_RMS:
            raise HTTPException(400, f"the audio is silent (RMS {rms:.1e}); nothing to animate")
        async with busy:
            return await run_in_threadpool(_make_take, audio, subject, title)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info")
    async def info() -> dict:
        from avguide.speech.espeak import VARIANTS

        return {"fps": engine.fps, "subjects": engine.subjects, "voices": list(VARIANTS), "streaming": engine.streaming,
                "lookahead_s": engine.lookahead_s,
                "names": list(ARKIT_NAMES), "n_vertices": engine.head.num_vertices,
                "streams_open": streams["open"], "limits": asdict(limits)}

    @app.get("/api/head.glb")
    async def head_glb(subject: str | None = None) -> FileResponse:
        try:
            _, name = engine.subject(subject)
        except AvguideError as e:
            raise HTTPException(400, str(e)) from None
        path = jobs.root / f"rest-{engine.subjects.index(name)}.glb"
        if not path.is_file():
            await run_in_threadpool(engine.write_rest_glb, path, name)
        return FileResponse(path, media_type="model/gltf-binary")

    @app.post("/api/say")
    async def say(request: Request) -> dict:
        body = await _read_body(request, 64 * 1024)
        try:
            msg = json.loads(body)
        except ValueError:
            raise HTTPException(400, 'the body must be JSON: {"text": "...", "subject": null}') from None
        msg = msg if isinstance(msg, dict) else {}
        text, subject, voice = msg.get("text"), msg.get("subject"), msg.get("voice")
        if not isinstance(text, str) or not text.strip():
            raise HTTPException(400, '"text" must be a non-empty string')
        if len(text) > limits.max_text_chars:
            raise HTTPException(400, f"text of {len(text)} characters; at most {limits.max_text_chars}")
        for key, value in (("subject", subject), ("voice", voice)):
            if value is not None and not isinstance(value, str):
                raise HTTPException(400, f'"{key}" must be a name or null')
        try:
            engine.subject(subject)
            audio = await run_in_threadpool(engine.speak, text, voice)
        except AvguideError as e:
            raise HTTPException(400, str(e)) from None
        return await _take(audio, subject, text.strip()[:80])

    @app.post("/api/animate")
    async def animate(request: Request, subject: str | None = None, name: str = "upload") -> dict:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind and not kind.startswith(AUDIO_TYPES):
            raise HTTPException(415, f"Content-Type {kind!r}: send the audio file itself "
                                     "(audio/* or application/octet-stream)")
        data = await _read_body(request, limits.max_upload_bytes)
        if not data:
            raise HTTPException(400, "the body is empty: send an audio file")
        try:
            engine.subject(subject)
        except AvguideError as e:
            raise HTTPException(400, str(e)) from None
        audio = await run_in_threadpool(_decode_audio, data)
        return await _take(audio, subject, name[:80])

    @app.get("/api/jobs/{job_id}")
    async def job_info(job_id: str) -> dict:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no take {job_id!r} (the server keeps the last {limits.keep_jobs})")
        return job.info

    @app.get("/api/jobs/{job_id}/{name}")
    async def job_file(job_id: str, name: str) -> FileResponse:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no take {job_id!r} (the server keeps the last {limits.keep_jobs})")
        try:
            path = await run_in_threadpool(jobs.file, job, name)
        except (AvguideError, OSError) as e:
            raise HTTPException(404, f"take {job_id!r} is gone ({str(e)[:120]})") from None
        if path is None:
            raise HTTPException(404, f"no file {name!r}; a take has {', '.join(n for n, _ in FILES.values())}")
        media = {n: t for n, t in FILES.values()}[name]
        return FileResponse(path, media_type=media, filename=f"avguide-{job_id[:6]}-{name}")

    @app.websocket("/api/stream")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        if streams["open"] >= limits.max_streams:
            await _close_with_error(ws, StreamError(BUSY, f"{limits.max_streams} streams are open; try again later"))
            return
        streams["open"] += 1
        session = StreamSession(engine, limits.max_chunk_bytes)
        try:
            while not session.done:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                replies = await run_in_threadpool(session.handle, msg.get("text"), msg.get("bytes"))
                for reply in replies:
                    await (ws.send_bytes(reply) if isinstance(reply, bytes) else ws.send_text(reply))
            await ws.close(1000)
        except StreamError as e:
            await _close_with_error(ws, e)
        except (WebSocketDisconnect, OSError):  # the client has gone (uvicorn's ClientDisconnected is an OSError)
            pass
        finally:
            streams["open"] -= 1

    return app


async def _close_with_error(ws: WebSocket, e: StreamError) -> None:
    """Tell the client what was wrong, then close with the error's code."""
    try:
        await ws.send_text(json.dumps({"type": "error", "code": e.code, "message": str(e)}))
        await ws.close(e.code, reason=str(e).encode()[:120].decode(errors="ignore"))
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client has gone already


def serve(anim: Any, host: str = "127.0.0.1", port: int = 8000, limits: Limits = Limits(),
          log_level: str = "info") -> None:
    """Run the studio with uvicorn until interrupted (``avguide serve``).

    Sets torch to one intra-op thread: requests run in parallel threads of their own, and the
    small per-chunk steps of a stream are fastest (and steadiest on a busy machine) on one.
    """
    import torch
    import uvicorn

    torch.set_num_threads(1)
    uvicorn.run(create_app(anim, limits), host=host, port=port, log_level=log_level)
