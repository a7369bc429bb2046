"""``avguide serve``: argument parsing only; :func:`avguide.serve.serve` does the work."""

from __future__ import annotations

import argparse
import socket

from avguide.errors import BadInputError


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--model", default="faceformer",
                   help="animator: a shipped model's name or a run directory (default: faceformer, which streams "
                        "at 0.04 of real time on 2 cores against 0.10 for the offline default codetalker)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest audio upload in MB (default 20)")
    p.add_argument("--max-seconds", type=float, default=60.0, help="longest speech animated per take (default 60)")
    p.add_argument("--max-streams", type=int, default=8, help="WebSocket streams at once (default 8)")


def _serve_run(a: argparse.Namespace) -> int:
    """Serve the studio page and the streaming endpoint until interrupted."""
    from avguide.animate import load_animator
    from avguide.serve import Limits, serve

    if not 0 < a.port < 65536:
        raise BadInputError(f"--port {a.port}: must be in 1..65535")
    for name, value in (("--max-upload-mb", a.max_upload_mb), ("--max-seconds", a.max_seconds),
                        ("--max-streams", a.max_streams)):
        if not value > 0:
            raise BadInputError(f"{name} {value}: must be > 0")
    check_listen(a.host, a.port)
    limits = Limits(max_upload_bytes=int(a.max_upload_mb * 2 ** 20), max_seconds=a.max_seconds,
                    max_streams=a.max_streams)
    anim = load_animator(a.model)
    print(f"avguide studio: http://{a.host}:{a.port}/  (streaming: ws://{a.host}:{a.port}/api/stream)", flush=True)
    serve(anim, host=a.host, port=a.port, limits=limits)
    return 0


def check_listen(host: str, port: int) -> None:
    """Refuse, before the model loads, an address the server could not listen on (a bad host
    name, an address not on this machine, a port in use or not allowed); the socket is closed again.

    Raises:
        BadInputError: naming --host / --port and the reason.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except (OSError, UnicodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise BadInputError(f"--host {host} --port {port}: cannot listen there ({reason})") from None
