"""Ship a trained run inside the package: fp16 weights, assets, manifest entry with test metrics.

    python tools/ship_model.py --run RUN --name faceformer --kind animator \
        --recipe configs/faceformer.yaml --data data/synth --summary "FaceFormer (cpu preset)"
    python tools/ship_model.py --run RUN --name reader --kind reader --recipe configs/expert/reader.yaml \
        --data data/synth --decoding '{"decode": "greedy"}'
    python tools/ship_model.py --name faceformer --data data/synth --metrics-only   # re-score a shipped model

``--metrics-only`` re-measures a shipped model's test metrics with the files it already has (e.g.
an animator's CER/WER/VER once the ``reader`` is shipped): its weight files are not rewritten.

Writes ``avguide/pretrained/<name>/`` (``model.safetensors`` with the floating-point parameters in
fp16 and every buffer as trained, ``meta.json``, and ``assets.safetensors`` or
``render_assets.npz``) and updates ``avguide/pretrained/manifest.json``: sha256 and size of each
file, the resolved config, the recipe file, the data (generator version, seed, size), training
wall time and machine, the commit, and the test-split metrics measured twice, with the run's fp32
weights and with the shipped fp16 ones (``test_metrics`` / ``test_metrics_fp32``). Animators are
scored with ``avguide evaluate`` (and the shipped ``reader`` if there is one); lip readers by
their CER on the test split with the given decoding (AV experts with clean and with dropped audio).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

import avguide
from avguide.io import atomic_path, write_json_atomic
from avguide.pretrained import MANIFEST, ROOT, half_state_dict, load_manifest, sha256_file

REPO = Path(__file__).resolve().parents[1]


def _checkpoint(run: Path):
    from avguide.checkpoint import load_checkpoint

    return load_checkpoint(run, "best")


def write_shipped(run: Path, name: str, kind: str) -> Path:
    """fp16 copy of the run's best checkpoint in ``avguide/pretrained/<name>/``."""
    state, meta, ckpt = _checkpoint(run)
    out = ROOT / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    half = half_state_dict(state, _parameter_names(meta, kind))
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(half, str(tmp), metadata={"avguide_version": avguide.__version__, "name": name})
    write_json_atomic(out / "meta.json", meta)
    for asset in ("assets.safetensors", "render_assets.npz"):
        src = ckpt / asset if (ckpt / asset).is_file() else ckpt.parent / asset
        if src.is_file():
            shutil.copyfile(src, out / asset)
    return out


def _parameter_names(meta: dict, kind: str) -> set[str]:
    """Names of the trainable parameters (fp16 in the shipped file); buffers keep their dtype."""
    if kind == "animator":
        from avguide.animate import build_from_meta

        model = build_from_meta(meta)
    else:
        from avguide.lipreader.reader import expert_from_meta

        model = expert_from_meta(meta)
    return {n for n, _ in model.named_parameters()}


def animator_metrics(model_dir: Path | None, data: Path) -> dict:
    """LVE, MVE, FDD, articulation (and the reader's CER/WER/VER when a reader is shipped) on the
    test split; ``model_dir`` None scores the static face (every frame the template: the floor)."""
    from avguide.animate import predict_split
    from avguide.metrics.evaluate import EvaluateConfig, evaluate_dataset
    from avguide.pretrained import canonical_name

    reader = None
    if canonical_name("reader") and kind_of("reader") == "reader":
        from avguide.lipreader.reader import load_reader

        reader = load_reader("reader")
    with tempfile.TemporaryDirectory() as tmp:
        if model_dir is None:
            from avguide.bench.runner import _static_predictions

            _static_predictions(data, Path(tmp))
        else:
            predict_split(model_dir, data, "test", tmp)
        rep = evaluate_dataset(tmp, data, EvaluateConfig(split="test", read_ground_truth=reader is not None),
                               reader=reader)
    from avguide.bench.runner import summarize

    row = summarize(rep)
    art = rep["summary"].get("articulation", {})
    row.update({k: art[k] for k in ("lip_motion_ratio", "opening_corr", "bilabial_closure", "bilabial_closure_gt",
                                    "open_vowel_aperture") if k in art})
    return row


def kind_of(name: str) -> str | None:
    entry = load_manifest()["models"].get(name)
    return entry["kind"] if entry else None


def reader_metrics(model_dir: Path, data: Path, decoding: dict) -> dict:
    """Test CER (and WER) of a lip reader with ``decoding``; AV experts with clean and dropped audio
    (``decoding`` may give one per audio mode: ``{"clean": {...}, "dropped": {...}}``)."""
    from avguide.data.layouts import open_dataset
    from avguide.lipreader.lipvideo import assets_from_dataset
    from avguide.lipreader.reader import load_trained_expert
    from avguide.lipreader.render_cache import RenderCache
    from avguide.train.expert import evaluate_split

    expert = load_trained_expert(model_dir, "best")
    modality = expert.model.cfg.modality
    index = open_dataset(data)
    with tempfile.TemporaryDirectory() as tmp:
        cache = RenderCache(assets_from_dataset(index), expert.crop, expert.camera, Path(tmp))
        modes = ("clean", "dropped") if modality == "av" else ("clean",)
        out = {}
        for mode in modes:
            how = decoding.get(mode, decoding) if "clean" in decoding else decoding
            r = evaluate_split(expert.model, index, index.split("test"), cache, expert.tokenizer, modality,
                               audio_mode=mode, **how)
            suffix = "" if mode == "clean" else "_dropped"
            out[f"cer{suffix}"], out[f"wer{suffix}"] = r["cer"], r["wer"]
    return out


def _training(run: Path, config: dict) -> dict:
    """Training wall time (the sum of the epochs' logged seconds), epochs and machine; for a
    CodeTalker its codebook run (``vq_run``) is counted too, and the epochs given per stage."""
    def stage(r: Path) -> tuple[float, int]:
        lines = [json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines() if x.strip()]
        return sum(x.get("seconds", 0.0) for x in lines), len(lines)

    seconds, epochs = stage(run)
    rec = {"seconds": round(seconds, 1), "epochs": epochs,
           "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
           "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(0)}
    vq_run = Path(config["vq_run"]) if config.get("vq_run") else None
    if vq_run is not None and (vq_run / "metrics.jsonl").is_file():
        vq_seconds, vq_epochs = stage(vq_run)
        rec |= {"seconds": round(seconds + vq_seconds, 1), "epochs_per_stage": {"vq": vq_epochs, "baseline": epochs},
                "seconds_per_stage": {"vq": round(vq_seconds, 1), "baseline": round(seconds, 1)}}
    return rec


def _data(data: Path) -> dict:
    manifest = data / "manifest.json"
    m = json.loads(manifest.read_text()) if manifest.is_file() else {}
    cfg = m.get("config", {})
    return {"generator": "avguide synth", "avguide_version": m.get("avguide_version"), "seed": cfg.get("seed"),
            "subjects": cfg.get("subjects"), "sentences": cfg.get("sentences"), "fps": cfg.get("fps"),
            "config": cfg}


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def rescore(name: str, data: Path) -> None:
    """Re-measure the shipped ``name``'s fp16 test metrics (and the static floor for animators) in
    the manifest; the fp32 figures need the run and stay as they were."""
    manifest = load_manifest()
    entry = manifest["models"][name]
    folder = ROOT / name
    if entry["kind"] == "animator":
        entry["test_metrics"] = animator_metrics(folder, data)
        entry["test_floor_static_face"] = animator_metrics(None, data)
    else:
        entry["test_metrics"] = reader_metrics(folder, data, entry.get("decoding") or {"decode": "greedy"})
    write_json_atomic(MANIFEST, manifest)
    print(json.dumps({"name": name, "fp16": entry["test_metrics"]}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="the trained run (not with --metrics-only)")
    ap.add_argument("--name", required=True)
    ap.add_argument("--kind", choices=["animator", "expert", "reader"])
    ap.add_argument("--recipe", help="the configs/ file that trains it")
    ap.add_argument("--data", required=True, type=Path, help="the benchmark it was trained on (test metrics)")
    ap.add_argument("--summary", default="")
    ap.add_argument("--decoding", default='{"decode": "greedy"}',
                    help='lip readers: decoding of the test CER (AV experts: optionally {"clean": {...}, "dropped": {...}})')
    ap.add_argument("--alias", action="append", default=[], help="also known as (e.g. default)")
    ap.add_argument("--metrics-only", action="store_true",
                    help="re-measure the shipped model NAME's test metrics; its files stay as they are")
    args = ap.parse_args()
    if args.metrics_only:
        rescore(args.name, args.data)
        return
    if args.run is None or args.kind is None or args.recipe is None:
        ap.error("--run, --kind and --recipe are required to ship a model")

    _, meta, _ = _checkpoint(args.run)
    decoding = json.loads(args.decoding)
    if args.kind == "animator":
        fp32 = animator_metrics(args.run, args.data)
    else:
        fp32 = reader_metrics(args.run, args.data, decoding)
    folder = write_shipped(args.run, args.name, args.kind)
    manifest = load_manifest()
    files = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in sorted(folder.iterdir())}
    manifest["models"][args.name] = {
        "kind": args.kind, "summary": args.summary, "files": files, "config": meta.get("config", {}),
        "recipe": args.recipe, "data": _data(args.data), "training": _training(args.run, meta.get("config", {})),
        "commit": _commit(), "avguide_version": avguide.__version__, "decoding": decoding if args.kind != "animator"
        else None, "test_metrics_fp32": fp32, "test_metrics": {},
    }
    for alias in args.alias:
        manifest["aliases"][alias] = args.name
    write_json_atomic(MANIFEST, manifest)
    from avguide.pretrained import _VERIFIED

    _VERIFIED.clear()
    fp16 = animator_metrics(folder, args.data) if args.kind == "animator" else reader_metrics(folder, args.data,
                                                                                                decoding)
    manifest["models"][args.name]["test_metrics"] = fp16
    if args.kind == "animator":  # the static face on the same split: the floor beside the model's rows
        manifest["models"][args.name]["test_floor_static_face"] = animator_metrics(None, args.data)
    write_json_atomic(MANIFEST, manifest)
    print(json.dumps({"name": args.name, "fp32": fp32, "fp16": fp16, "files": files}, indent=2))


if __name__ == "__main__":
    main()
