"""``avguide serve``: a browser studio and a streaming animation server (issue 20).

* :mod:`avguide.serve.app`: the FastAPI application (:func:`create_app`, :func:`serve`): the
  studio page, its JSON API and the ``/api/stream`` WebSocket;
* :mod:`avguide.serve.stream`: the streaming protocol (16 kHz signed 16-bit little-endian PCM in,
  per-frame ARKit weights and optionally vertices out), independent of the web framework;
* :mod:`avguide.serve.engine`: the animator on the embedded head, and a take's files;
* :mod:`avguide.serve.jobs`: the takes on disk;
* ``static/``: the page (HTML, JS, CSS) and three.js r180, vendored (MIT licence beside it):
  nothing is fetched at run time.

    from avguide.serve import create_app, serve
    serve(load_animator("faceformer"), host="127.0.0.1", port=8000)

``examples/stream_client.py`` streams a wav file to a running server.
"""

__all__ = ["Limits", "create_app", "serve"]


def __getattr__(name: str):
    """The application's names, imported on first use: ``avguide.serve.cli`` (which the
    ``avguide`` command imports) stays cheap and works without fastapi installed."""
    if name in __all__:
        from avguide.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'avguide.serve' has no attribute {name!r}")
