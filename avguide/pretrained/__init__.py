"""Trained models shipped inside the package, loaded by name.

Each shipped model is a checkpoint directory ``avguide/pretrained/<name>/`` (fp16 weights in
``model.safetensors``, ``meta.json`` with the resolved config, and the assets inference needs:
``assets.safetensors`` for an animator, ``render_assets.npz`` for a lip reader), listed in
``manifest.json`` with the sha256 and size of every file, the recipe that trained it, its data,
training time and test-split metrics. ``README.md`` beside them is the model card.

Wherever a command takes a run or a checkpoint directory, a shipped name works too
(:func:`resolve`); ``default`` names the best animator. The sha256 of every file is checked the
first time a model is loaded in a process.

    avguide models                                   # the table
    avguide animate speech.wav -o out/               # the default animator
    avguide evaluate --pred P --data D --reader reader -o report.json
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from avguide.errors import BadInputError, MissingFileError

ROOT = Path(__file__).resolve().parent
MANIFEST = ROOT / "manifest.json"
KINDS = ("animator", "expert", "reader")
"""What a shipped model is: an animator, an audio-visual expert (the AV loss), or a visual-only
evaluation reader."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def load_manifest(path: Path | None = None) -> dict[str, Any]:
    """The manifest: ``{"models": {name: entry}, "aliases": {alias: name}}`` (empty when nothing
    is shipped).

    Raises:
        BadInputError: the manifest is not valid JSON of that shape (a broken installation).
    """
    path = MANIFEST if path is None else path
    if not path.is_file():
        return {"models": {}, "aliases": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInputError(f"{path}: unreadable model manifest ({e}); reinstall avguide") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise BadInputError(f"{path}: model manifest lacks a 'models' mapping; reinstall avguide")
    data.setdefault("aliases", {})
    return data


def shipped_names() -> list[str]:
    """Every name :func:`resolve` accepts (models and aliases), sorted."""
    m = load_manifest()
    return sorted([*m["models"], *m["aliases"]])


def canonical_name(name: str) -> str | None:
    """The shipped model a name or alias stands for, or None."""
    m = load_manifest()
    name = m["aliases"].get(name, name)
    return name if name in m["models"] else None


def is_shipped(name: str | Path) -> bool:
    """Whether ``name`` is a shipped model's name or alias (not a path that exists)."""
    return isinstance(name, str) and not Path(name).exists() and canonical_name(name) is not None


_VERIFIED: set[Path] = set()


def _verified(name: str) -> Path:
    """Check every file of a shipped model against the manifest (once per process and folder)."""
    entry = load_manifest()["models"][name]
    folder = ROOT / name
    if folder in _VERIFIED:
        return folder
    for rel, want in entry["files"].items():
        path = folder / rel
        if not path.is_file():
            raise MissingFileError(f"shipped model {name!r}: {path} is missing; reinstall avguide")
        size = path.stat().st_size
        if size != want["bytes"] or sha256_file(path) != want["sha256"]:
            raise BadInputError(f"shipped model {name!r}: {path} is corrupt (sha256 or size differs from "
                                f"{MANIFEST.name}); reinstall avguide")
    _VERIFIED.add(folder)
    return folder


def resolve(name_or_path: str | Path, kind: str | None = None) -> Path:
    """A run / checkpoint directory, or a shipped model's verified directory.

    Args:
        name_or_path: a path that exists (returned unchanged), or a shipped name (``default``,
            ``faceformer``, ``expert-av``, ``reader``, ...).
        kind: if given, a shipped model must be of this kind ("animator", "expert", "reader").
    Returns:
        The directory to load from.
    Raises:
        MissingFileError: neither an existing path nor a shipped name.
        BadInputError: a shipped model of another kind, or a file whose sha256 does not match.
    """
    p = Path(name_or_path)
    if p.exists():
        return p
    name = canonical_name(str(name_or_path))
    if name is None:
        shipped = ", ".join(shipped_names()) or "none in this installation"
        raise MissingFileError(f"{name_or_path}: not a run or checkpoint directory (nothing there), and not a shipped model "
                               f"(shipped: {shipped})")
    entry = load_manifest()["models"][name]
    if kind is not None and entry["kind"] != kind:
        raise BadInputError(f"{name_or_path}: the shipped model {name!r} is a {entry['kind']}, not a {kind}")
    return _verified(name)


def half_state_dict(state: dict, parameters: set[str]) -> dict:
    """The state dict as shipped: floating-point parameters in fp16, buffers (batch-norm statistics,
    the codec's motion scale) as trained. ``load_state_dict`` casts them back to the model's dtype."""
    return {k: (v.half() if k in parameters and v.is_floating_point() else v).contiguous() for k, v in state.items()}


def model_table() -> str:
    """``avguide models``: one row per shipped model with its test metrics (markdown)."""
    m = load_manifest()
    if not m["models"]:
        return "no models are shipped in this installation"
    aliases: dict[str, list[str]] = {}
    for alias, target in m["aliases"].items():
        aliases.setdefault(target, []).append(alias)
    rows = ["| name | kind | what | MB | test metrics |", "|---|---|---|---|---|"]
    for name, e in sorted(m["models"].items()):
        label = name + "".join(f" (= {a})" for a in sorted(aliases.get(name, [])))
        mb = sum(f["bytes"] for f in e["files"].values()) / 1e6
        metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in e.get("test_metrics", {}).items())
        rows.append(f"| {label} | {e['kind']} | {e.get('summary', '')} | {mb:.1f} | {metrics} |")
    return "\n".join(rows)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
