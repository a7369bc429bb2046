"""The main job: speech or text in; video, vertices, ARKit weights, glTF and OBJ out.

    avguide say "Hello there." -o out/                      # espeak-ng speech + the default animator
    avguide animate a.wav b.mp3 -o out/ --formats mp4,arkit,glb

:func:`load_animator` loads a trained animator run or a shipped model by name (``default``);
:func:`animate_files` / :func:`say` run the whole job. Streaming animators (the shipped ones) are
run through :func:`avguide.animators.stream.animate_in_chunks`: frames go to a memory-mapped
``.npy`` as they come, so 10 minutes of speech never hold more than a chunk of meshes in memory;
every format is then written from that file. :func:`predict_split` writes predictions for a
dataset split (``avguide evaluate``, the benchmark).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from avguide import AUDIO_RATE
from avguide.errors import BadInputError

if TYPE_CHECKING:  # imported where used: animate_files and say start the video's frame process first
    import torch

    from avguide.render.frameprocess import FrameProcess
    from avguide.speech.espeak import Utterance

SILENCE_RMS = 1e-4
"""Audio quieter than this (RMS, full scale 1) is refused as silent."""
MAX_SCALE_RATIO = 5.0
"""A ``--template`` whose size differs from the model's training faces by more than this factor
is refused (another unit: millimetres for metres)."""
MAX_STEM = 120
"""Longest ``--name`` accepted (characters)."""
FORMATS = ("mp4", "npy", "arkit", "glb", "obj", "articulation")
"""Output formats: video with the audio, (T, V*3) vertices, ARKit weights (Live Link Face CSV and
JSON), glTF 2.0 binary with morph targets and their animation, one OBJ per frame, and the
articulation report (JSON: do the lips close at /p b m/ and open at open vowels; it needs the
speech's phones: espeak-ng's own for ``say``, a transcript aligned to the recording for
``animate``)."""
DEFAULT_FORMATS = ("mp4", "npy")
VIDEO_SIZE = 512
"""Side of the mp4's square image (pixels)."""


@dataclass
class LoadedAnimator:
    """A trained animator with what inference needs."""

    model: torch.nn.Module
    config: dict                      # the run's resolved config
    fps: float
    train_subjects: list[str]
    templates: dict[str, np.ndarray]  # training subjects' (V,3) templates
    faces: np.ndarray | None          # (F,3) if the dataset had a topology file
    checkpoint: Path


def build_from_meta(meta: dict) -> torch.nn.Module:
    """The (untrained) animator a checkpoint's meta describes.

    Raises:
        BadInputError: not an animator checkpoint, or a CodeTalker stage-1 (``--stage vq``) run,
            which holds a motion codec but no speech-to-motion predictor.
    """
    from avguide.animators import CodeTalkerConfig, FaceFormerConfig, build_animator
    from avguide.config import load_config

    cfg = meta.get("config", {})
    model_cfg, dataset = cfg.get("model"), cfg.get("dataset")
    if not isinstance(model_cfg, dict) or model_cfg.get("kind") not in ("faceformer", "codetalker") or not dataset:
        raise BadInputError("not an animator checkpoint (no animator model config)")
    if cfg.get("stage") == "vq" or model_cfg.get("stage") == 1:
        raise BadInputError("a CodeTalker stage-1 (--stage vq) run only encodes motion; it cannot animate speech. "
                            "Use the stage-2 run trained with vq_run=<this run>")
    cls = FaceFormerConfig if model_cfg["kind"] == "faceformer" else CodeTalkerConfig
    return build_animator(load_config(cls, base=model_cfg), dataset["n_vertices"], len(dataset["train_subjects"]))


def load_animator(run: str | Path = "default", which: str = "best", device: str = "cpu") -> LoadedAnimator:
    """Load an animator: a run written by ``avguide train`` or a shipped model's name.

    Args:
        run: run directory, checkpoint directory, or shipped name (``default``, ``faceformer``,
            ``codetalker``; ``avguide models`` lists them).
        which: "best" (lowest validation loss) or "last".
        device: torch device.
    Raises:
        MissingFileError: not a run and not a shipped name. BadInputError: not an animator (or a
            stage-1 CodeTalker run), weights that do not fit, corrupt files, non-finite templates.
    """
    from avguide.checkpoint import load_checkpoint
    from avguide.io import load_safetensors
    from avguide.pretrained import resolve

    state, meta, ckpt = load_checkpoint(resolve(run, kind="animator"), which)
    try:
        model = build_from_meta(meta)
    except BadInputError as e:
        raise BadInputError(f"{ckpt}: {e}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BadInputError(f"{ckpt}: weights do not fit the saved config ({str(e)[:300]})") from None
    model.to(device).eval()
    assets_path = next((d / "assets.safetensors" for d in (ckpt, ckpt.parent) if (d / "assets.safetensors").is_file()),
                       None)
    assets = load_safetensors(assets_path, "run assets") if assets_path is not None else {}
    templates = {k.split("/", 1)[1]: v.float().numpy() for k, v in assets.items() if k.startswith("template/")}
    for name, t in templates.items():
        if not np.isfinite(t).all():
            raise BadInputError(f"{assets_path}: the template of {name} contains NaN or inf")
    faces = assets["faces"].numpy() if "faces" in assets else None
    cfg = meta["config"]
    return LoadedAnimator(model, cfg, float(cfg["dataset"]["fps"]), list(cfg["dataset"]["train_subjects"]),
                          templates, faces, ckpt)


def _subject_index(anim: LoadedAnimator, subject: str | None) -> int:
    if subject is None:
        return 0
    if subject not in anim.train_subjects:
        raise BadInputError(f"--subject {subject!r}: unknown; this model knows the speaking styles of "
                            f"{', '.join(anim.train_subjects)}")
    return anim.train_subjects.index(subject)


def face_template(anim: LoadedAnimator, subject: str | None = None,
                  template: str | Path | None = None) -> tuple[np.ndarray, np.ndarray | None, int]:
    """The face to animate, its topology and the style index.

    Args:
        subject: speaking style (a training subject; default the first), also the face unless
            ``template`` is given.
        template: a mesh (.obj/.ply) or a (V, 3) .npy of the same vertex count.
    Returns:
        template (V, 3) float32, faces (F, 3) or None, style index.
    Raises:
        BadInputError / MissingFileError: unknown subject, unreadable or wrong-sized template, NaN.
    """
    style = _subject_index(anim, subject)
    faces = anim.faces
    n_v = int(anim.config["dataset"]["n_vertices"])
    if template is None:
        name = anim.train_subjects[style]
        if name not in anim.templates:
            raise BadInputError(f"{anim.checkpoint}: run has no template for {name}; pass --template")
        return anim.templates[name], faces, style
    tpath = Path(template)
    if tpath.suffix.lower() == ".npy":
        from avguide.io import load_array

        verts = load_array(tpath, "template")
        if verts.ndim not in (2, 3) or verts.size % 3 or verts.size == 0:
            raise BadInputError(f"{tpath}: template must be (V, 3) coordinates, got shape {verts.shape}")
        verts = verts.reshape(-1, 3)
    else:
        from avguide.data.meshfile import read_mesh

        verts, faces = read_mesh(tpath)
    if verts.shape[0] != n_v:
        raise BadInputError(f"{tpath}: template has {verts.shape[0]} vertices, the model animates {n_v}")
    if not np.isfinite(verts).all():
        raise BadInputError(f"{tpath}: template contains NaN or inf")
    _check_scale(anim, np.asarray(verts, np.float64), tpath)
    return np.asarray(verts, np.float32), faces, style


def _check_scale(anim: LoadedAnimator, verts: np.ndarray, path: Path) -> None:
    """A face of about the size of the model's training faces: the model adds offsets in their
    unit (metres for the shipped ones), so a template in millimetres would barely move."""
    if not anim.templates:
        return
    ref = float(np.median([np.ptp(t, axis=0).max() for t in anim.templates.values()]))
    size = float(np.ptp(verts, axis=0).max())
    if not ref / MAX_SCALE_RATIO <= size <= ref * MAX_SCALE_RATIO:
        raise BadInputError(f"{path}: template is {size:.3g} units across, the model's faces {ref:.3g}; "
                            f"give it in the model's unit (more than {MAX_SCALE_RATIO:g} times off: "
                            "another unit, or not a face)")


def check_speech(wav: np.ndarray, what: str) -> None:
    """Refuse silent audio (nothing to animate)."""
    rms = float(np.sqrt(np.mean(wav.astype(np.float64) ** 2)))
    if rms < SILENCE_RMS:
        raise BadInputError(f"{what}: audio is silent (RMS {rms:.1e}); nothing to animate")


def n_frames_of(anim: LoadedAnimator, n_samples: int) -> int:
    """Motion frames for ``n_samples`` of 16 kHz audio: ``round(L / 16000 * fps)``."""
    return max(1, round(n_samples / AUDIO_RATE * anim.fps))


def _passive_openmp() -> None:
    """Idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE`` unless the user
    set it), when torch is not imported yet (OpenMP reads it once, as torch loads).

    The animators decode one frame at a time: a step is a few hundred small operations, and after
    each one torch's other threads would spin, waiting for the next, on the core the video's frame
    process needs. Asleep, the same threads give the same numbers (one thread would sum in another
    order: vertices within float rounding, a few pixels one level off). docs/results.md, session
    13, has the measurements."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def animate_speech(anim: LoadedAnimator, audio: np.ndarray, template: np.ndarray, style: int,
                   chunk_s: float = 10.0):
    """Animate one clip, block by block.

    Args:
        anim: the loaded animator. audio: (L,) float32 16 kHz mono.
        template: (V, 3) neutral face. style: training-subject index of the speaking style.
        chunk_s: seconds of audio per block (streaming animators; others animate in one block).
    Yields:
        (k, V, 3) float32 blocks of consecutive frames at ``anim.fps``; ``round(L / 16000 * fps)``
        frames in all.
    """
    import torch

    from avguide.animators.stream import animate_in_chunks, can_stream

    if can_stream(anim.model):
        blocks = animate_in_chunks(anim.model, audio, template, style, chunk_s)
        while True:
            with torch.no_grad():  # only while a block is computed: not the caller's work
                block = next(blocks, None)
            if block is None:
                return
            yield block
    device = next(anim.model.parameters()).device
    a = torch.from_numpy(audio)[None].to(device)
    with torch.no_grad():
        out = anim.model.generate(a, torch.tensor([a.shape[1]], device=device),
                                  torch.from_numpy(np.asarray(template, np.float32))[None].to(device),
                                  torch.tensor([style], device=device))
    yield out[0].cpu().numpy().astype(np.float32)


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"mp4,arkit"`` -> ("mp4", "arkit"), checked against :data:`FORMATS`.

    Raises:
        BadInputError: an unknown or empty format list.
    """
    items = [f.strip().lower() for f in (text.split(",") if isinstance(text, str) else text) if f.strip()]
    bad = [f for f in items if f not in FORMATS]
    if not items:
        raise BadInputError(f"--formats {text!r}: no format given; choose from {', '.join(FORMATS)}")
    if bad:
        raise BadInputError(f"--formats {','.join(items)}: unknown format(s) {bad}; choose from {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(items))


def output_names(paths: Sequence[str | Path]) -> list[str]:
    """One output stem per input, never two alike: the file's stem, or ``stem_ext`` (then ``_2``,
    ``_3`` ...) where stems collide (``a.wav`` and ``a.mp3`` -> ``a_wav``, ``a_mp3``)."""
    stems = [Path(p).stem for p in paths]
    names, used = [], set()
    for p, stem in zip(paths, stems):
        name = stem if stems.count(stem) == 1 else f"{stem}_{Path(p).suffix.lstrip('.') or 'audio'}"
        base, k = name, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        names.append(name)
    return names


def _outputs_of(out: Path, name: str, formats: Sequence[str]) -> dict[str, Path]:
    files = {"mp4": out / f"{name}.mp4", "npy": out / f"{name}.npy", "arkit": out / f"{name}_arkit.csv",
             "glb": out / f"{name}.glb", "obj": out / f"{name}_obj", "articulation": out / f"{name}_articulation.json"}
    return {f: files[f] for f in formats}


def write_outputs(out_dir: str | Path, name: str, frames, n_frames: int, audio: np.ndarray, anim: LoadedAnimator,
                  template: np.ndarray, faces: np.ndarray | None, formats: Sequence[str], *, caption: str = "",
                  progress: bool = False, frame_process: FrameProcess | None = None,
                  phones: Sequence | None = None, phones_info: dict | None = None) -> dict[str, str]:
    """Write every requested format of one animated clip.

    Args:
        out_dir: output folder. name: output stem.
        frames: iterable of (k, V, 3) float32 blocks, ``n_frames`` frames in all.
        audio: (L,) float32 16 kHz (muxed into the mp4).
        template: (V, 3) the face (ARKit solve, glb base mesh). faces: (F, 3) or None.
        formats: subset of :data:`FORMATS`.
        frame_process: the mp4's frames are drawn there (:func:`start_frame_process`); without
            it, in this process (the compiled renderer loaded in a thread while the animator works).
        phones: the speech's timed phones (``Phone`` or ``(ipa, start_s, end_s)``), needed by
            ``articulation``; phones_info says where they come from (recorded in the report).
    Returns:
        {format: path written} (ARKit: the CSV; its JSON sits beside it).
    Raises:
        BadInputError: a format that needs the topology (mp4, glb, obj) without faces; ARKit/glb for
            a mesh other than the embedded head (its blendshapes define them).
    """
    from numpy.lib.format import write_array_header_1_0

    from avguide.io import atomic_path

    out = Path(out_dir)
    paths = _outputs_of(out, name, formats)
    out.mkdir(parents=True, exist_ok=True)
    if "mp4" in formats and frame_process is None:  # the video renderer's machine code loads while the animator works
        threading.Thread(target=_warm_video_renderer, daemon=True).start()
    if "mp4" in formats and frame_process is not None and caption and frame_process.ready():
        frame_process.ask_captions([caption], VIDEO_SIZE)  # drawn there while the animator works here
    result: dict[str, str] = {}
    with tempfile.TemporaryDirectory(dir=out, prefix=f".{name}.") as tmp:
        npy_tmp = Path(tmp) / "vertices.npy"
        with open(npy_tmp, "wb") as f:  # blocks appended as they come: one block in memory at a time
            write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                       "shape": (n_frames, template.shape[0] * 3)})
            t = 0
            for block in frames:
                block = np.ascontiguousarray(block.reshape(len(block), -1), dtype="<f4")
                if not np.isfinite(block).all():  # a bug of ours or a corrupt model: never write NaN meshes
                    raise BadInputError(f"{anim.checkpoint}: the animator produced NaN or inf for {name}; the "
                                        "model is corrupt or does not fit this face")
                f.write(block.tobytes())
                t += len(block)
        assert t == n_frames, (t, n_frames)
        verts = np.load(npy_tmp, mmap_mode="r")  # read-only map: clean pages the system may drop
        seq = verts.reshape(n_frames, -1, 3)  # (T, V, 3) view of the memory map
        if "arkit" in formats or "glb" in formats:
            from avguide.export import solve_arkit, write_arkit_csv, write_arkit_json

            head = _head_for(template.shape[0], formats)
            fit = solve_arkit(seq, template, head.blendshapes)
            if "arkit" in formats:
                write_arkit_csv(paths["arkit"], fit.weights, anim.fps)
                write_arkit_json(paths["arkit"].with_suffix(".json"), fit.weights, anim.fps, fit)
                result["arkit"] = str(paths["arkit"])
            if "glb" in formats:
                from avguide.export import head_vertex_colors, write_glb

                write_glb(paths["glb"], template, _need_faces(faces, "glb"), head.blendshapes, fit.weights, anim.fps,
                          vertex_colors=head_vertex_colors(head))
                result["glb"] = str(paths["glb"])
        if "articulation" in formats:
            write_articulation(paths["articulation"], seq, template, phones, anim, phones_info or {})
            result["articulation"] = str(paths["articulation"])
        if "obj" in formats:
            from avguide.export import write_obj_sequence

            write_obj_sequence(paths["obj"], seq, _need_faces(faces, "obj"))
            result["obj"] = str(paths["obj"])
        if "mp4" in formats:
            from avguide.audio.io import save_wav
            from avguide.render.video import render_video

            wav = Path(tmp) / "speech.wav"
            save_wav(wav, audio, AUDIO_RATE)
            render_video([seq], _need_faces(faces, "mp4"), paths["mp4"], fps=anim.fps, audio_path=wav,
                         vertex_part=_parts(template.shape[0]), captions=[caption] if caption else None,
                         size=VIDEO_SIZE, progress=progress, frame_process=frame_process)
            result["mp4"] = str(paths["mp4"])
        if "npy" in formats:
            del seq, verts
            with atomic_path(paths["npy"]) as final:
                Path(npy_tmp).replace(final)
            result["npy"] = str(paths["npy"])
    return result


def articulation_of(seq: np.ndarray, template: np.ndarray, phones: Sequence, fps: float) -> dict:
    """:func:`avguide.metrics.articulation.articulation_without_truth` of an animation of the
    embedded head (its lip regions), in millimetres.

    Args:
        seq: (T, V, 3) float vertices in metres. template: (V, 3) the face at rest.
        phones: timed phones. fps: frame rate.
    """
    from avguide.metrics.articulation import articulation_without_truth

    head = _head_for(template.shape[0], ["articulation"])
    r = articulation_without_truth(seq, phones, fps, head.regions["lips"], head.regions["upper_lip"],
                                   head.regions["lower_lip"], template)
    mm = ("rest_opening", "widest_opening", "closure_threshold", "open_vowel_opening")
    out = {k: (1000.0 * v if k in mm else v) for k, v in r.items() if k != "segments"}
    out = {k: (None if isinstance(v, float) and v != v else v) for k, v in out.items()}  # NaN: nothing to judge
    out["segments"] = [{**g, "min_opening": 1000.0 * g["min_opening"]} for g in r["segments"]]
    out["unit"] = "mm"
    return out


def write_articulation(path: Path, seq: np.ndarray, template: np.ndarray, phones: Sequence | None,
                       anim: LoadedAnimator, phones_info: dict) -> None:
    """``<name>_articulation.json``: :func:`articulation_of` with the phones it judged and where they
    came from (``phones_info``: "phones_source", and for an aligned transcript "alignment_cost" and
    "alignment_doubtful"), the model and the package version (written atomically)."""
    import avguide
    from avguide.io import write_json_atomic

    if phones is None:  # a bug of ours: the callers check this before any work
        raise ValueError("articulation needs the speech's phones")
    timed = [(p.ipa, p.start, p.end) if hasattr(p, "ipa") else tuple(p)[:3] for p in phones]
    report = {"articulation": articulation_of(seq, template, timed, anim.fps), "fps": anim.fps,
              **phones_info, "phones": [[ipa, round(a, 4), round(b, 4)] for ipa, a, b in timed],
              "model": str(anim.checkpoint), "avguide_version": avguide.__version__}
    write_json_atomic(path, report)


def articulation_line(a: dict) -> str:
    """One line for people from :func:`articulation_of`'s dict: ``articulation: 7/8 /p b m/ close
    (within 2.1 mm of rest), open vowels open 9.3 mm (widest 15.0 mm)``."""
    if not a["bilabial_segments"] and not a["open_vowel_frames"]:
        return "articulation: no /p b m/ and no open vowel to judge"
    parts = []
    if a["bilabial_segments"]:
        parts.append(f"{a['bilabial_closed']}/{a['bilabial_segments']} /p b m/ close "
                     f"(within {a['closure_threshold']:.1f} mm of rest)")
    if a["open_vowel_frames"]:
        parts.append(f"open vowels open {a['open_vowel_opening']:.1f} mm")
    return "articulation: " + ", ".join(parts) + f" (widest {a['widest_opening']:.1f} mm)"


def start_frame_process(workers: int = 2) -> subprocess.Popen | None:
    """Start the process that draws the video's frames (:class:`avguide.render.frameprocess.FrameProcess`)
    now, before this process imports torch: on 2 cores it imports numba and loads the compiled
    renderer (about 1 s of CPU) while this one imports torch and animates.

    The program imports ``avguide/render/jitraster.py`` as ``avguide.render.jitraster`` (the name
    its numba cache is kept under) without running the packages' ``__init__`` (``avguide.render``'s
    imports torch), then runs its ``serve``.

    Args:
        workers: threads drawing frames in the process.
    Returns:
        The process, stdin and stdout piped (wrap it in ``FrameProcess`` to use it), or None when
        it cannot be started (the video is then drawn in this process).
    """
    package = Path(__file__).resolve().parent
    try:
        return subprocess.Popen([sys.executable, "-c", _FRAME_PROCESS, str(package), str(workers)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    except OSError:
        return None


_FRAME_PROCESS = """import sys, types
del sys.path[0]  # not the current folder's modules
for name, path in (("avguide", sys.argv[1]), ("avguide.render", sys.argv[1] + "/render")):
    sys.modules[name] = types.ModuleType(name)  # the package, without its __init__
    sys.modules[name].__path__ = [path]
from avguide.render.jitraster import serve
serve(int(sys.argv[2]))
"""
"""The program of :func:`start_frame_process`."""


def _frame_process(proc: subprocess.Popen | None) -> FrameProcess | None:
    """``proc`` wrapped in a ``FrameProcess`` (None stays None)."""
    if proc is None:
        return None
    from avguide.render.frameprocess import FrameProcess

    return FrameProcess(proc)


def _end_frame_process(proc: subprocess.Popen | None) -> None:
    """Close the frame process's input (it then exits) and wait for it; kill it after 5 s."""
    if proc is None:
        return
    try:
        proc.stdin.close()
        proc.wait(5)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
    proc.stdout.close()


def _warm_video_renderer() -> None:
    """Import numba and load the compiled video renderer (:func:`avguide.render.jitraster.warm_up`)."""
    try:
        from avguide.render.jitraster import warm_up
        warm_up()
    except Exception:  # noqa: BLE001  an early start only: the render itself reports any problem
        pass


def _need_faces(faces: np.ndarray | None, fmt: str) -> np.ndarray:
    if faces is None:
        raise BadInputError(f"--formats {fmt}: the model has no mesh topology; pass --template MESH.obj/.ply")
    return faces


def _head_for(n_vertices: int, formats: Sequence[str]):
    from avguide.assets.head import load_head

    head = load_head()
    if head.num_vertices != n_vertices:
        needs = {"arkit": "ARKit weights (its blendshapes)", "glb": "glb morph targets (its blendshapes)",
                 "articulation": "the articulation report (its lip regions)"}
        used = [f for f in formats if f in needs]
        raise BadInputError(f"--formats {','.join(used)}: {' and '.join(needs[f] for f in used)} need the embedded "
                            f"head ({head.num_vertices} vertices); this model animates {n_vertices}")
    return head


def _parts(n_vertices: int):
    from avguide.assets.head import load_head

    head = load_head()
    return np.asarray(head.vertex_part) if head.vertices.shape[0] == n_vertices else None


def check_formats(anim: LoadedAnimator, template: np.ndarray, faces: np.ndarray | None, formats: Sequence[str]) -> None:
    """Before any work: every requested format can be made for this model and face.

    Raises:
        BadInputError: mp4, glb or obj without a mesh topology; arkit, glb or articulation for a
            mesh other than the embedded head.
    """
    for fmt in formats:
        if fmt in ("mp4", "glb", "obj"):
            _need_faces(faces, fmt)
    if {"arkit", "glb", "articulation"} & set(formats):
        _head_for(template.shape[0], formats)


def _check_outputs(out_dir: str | Path, names: Sequence[str], formats: Sequence[str]) -> Path:
    """Before any work: the folder can be written and no output path is in the way."""
    from avguide.io import check_output_dir, check_output_file

    out = check_output_dir(out_dir, "-o")
    for name in names:
        for fmt, path in _outputs_of(out, name, formats).items():
            if fmt == "obj":
                check_output_dir(path, "-o")
            else:
                check_output_file(path, "-o")
    return out


def animate_files(speech: Sequence[str | Path], out_dir: str | Path, *, checkpoint: str | Path = "default",
                  subject: str | None = None, template: str | Path | None = None,
                  formats: Sequence[str] = DEFAULT_FORMATS, transcripts: Sequence[str] | None = None,
                  seed: int = 0, progress: bool = True) -> list[dict]:
    """``avguide animate``: speech files -> the requested outputs, one set per file.

    Args:
        speech: audio files in any format ffmpeg or libsndfile reads, any rate or channel count
            (converted to 16 kHz mono).
        out_dir: output folder; ``<name>.<ext>`` per input (:func:`output_names`).
        checkpoint: animator run or shipped name (default: the shipped ``default``).
        subject, template: speaking style and face (:func:`face_template`).
        formats: subset of :data:`FORMATS`.
        transcripts: what each file says, in order (adds ``articulation``: the transcript is
            aligned to the recording, :func:`avguide.speech.align.align_transcript`).
        seed: torch seed (inference is deterministic; recorded for completeness).
        progress: a progress bar over the files (and the video frames).
    Returns:
        One dict per input: {"input", "name", "frames", "fps", "subject", "outputs": {format: path}}
        (and "articulation": the report's metrics with that format).
    Raises:
        MissingFileError / BadInputError: a missing or unreadable input, silent audio, a bad model,
            subject or template, a missing or unalignable transcript, an output path in the way
            (checked before any work).
    """
    formats = parse_formats(formats)
    if not speech:
        raise BadInputError("no speech file given")
    if transcripts:
        formats = tuple(dict.fromkeys([*formats, "articulation"]))
        if len(transcripts) != len(speech):
            raise BadInputError(f"--transcript: {len(transcripts)} given for {len(speech)} speech file(s); give one "
                                "per file, in the same order")
    elif "articulation" in formats:
        raise BadInputError("--formats articulation: give --transcript TEXT for each speech file (what it says), "
                            "to time its phones")
    proc = start_frame_process() if "mp4" in formats else None  # first: it loads numba while torch loads here
    _passive_openmp()
    try:
        from tqdm import tqdm

        import torch

        from avguide.audio.io import load_audio
        from avguide.io import existing_file

        torch.manual_seed(seed)
        for p in speech:
            existing_file(p, "speech file")  # missing, or a directory
        names = output_names(speech)
        _check_outputs(out_dir, names, formats)
        anim = load_animator(checkpoint)
        base, faces, style = face_template(anim, subject, template)
        check_formats(anim, base, faces, formats)
        alignments = []
        for k, path in enumerate(speech):  # every input readable, not silent and aligned before anything is written
            wav = load_audio(path)
            check_speech(wav, str(path))
            if transcripts:
                from avguide.speech.align import align_transcript

                alignments.append(align_transcript(wav, transcripts[k], str(path)))
                if alignments[-1].doubtful:
                    print(f"warning: {path}: the recording matches its transcript poorly (alignment cost "
                          f"{alignments[-1].cost:.2f}; matching ones score below 0.8): is it the right transcript? "
                          "Its articulation report would judge the wrong phones.", file=sys.stderr)
        frame_process = _frame_process(proc)
        results = []
        for k, (path, name) in enumerate(tqdm(list(zip(speech, names)), desc="animate", unit="file",
                                              disable=not progress or len(speech) < 2)):
            wav = load_audio(path)
            n = n_frames_of(anim, len(wav))
            frames = animate_speech(anim, wav, base, style)
            outputs = write_outputs(out_dir, name, frames, n, wav, anim, base, faces, formats,
                                    caption=f"{name} ({anim.train_subjects[style]} style)", progress=progress,
                                    frame_process=frame_process, phones=alignments[k].phones if alignments else None,
                                    phones_info=_aligned_info(alignments[k]) if alignments else None)
            results.append(_result(str(path), name, n, anim, style, outputs))
        return results
    finally:
        _end_frame_process(proc)


def _aligned_info(alignment) -> dict:
    """How an aligned transcript's phones were found, for the articulation report."""
    return {"phones_source": "the transcript aligned to the recording (espeak-ng + DTW)",
            "alignment_cost": round(alignment.cost, 3), "alignment_doubtful": alignment.doubtful}


def _result(source: str, name: str, n_frames: int, anim: LoadedAnimator, style: int, outputs: dict) -> dict:
    """What ``animate`` and ``say`` return for one clip (with the articulation report's metrics
    when it was written)."""
    r = {"input": source, "name": name, "frames": n_frames, "fps": anim.fps, "subject": anim.train_subjects[style],
         "outputs": outputs}
    if "articulation" in outputs:
        from avguide.io import load_json

        r["articulation"] = load_json(outputs["articulation"], "articulation report")["articulation"]
    return r


def speak_text(text: str, voice: str | None = None, rate_wpm: int | None = None) -> np.ndarray:
    """espeak-ng speech of ``text``: (L,) float32 16 kHz (:func:`speak_utterance`'s audio)."""
    return speak_utterance(text, voice, rate_wpm).audio


def speak_utterance(text: str, voice: str | None = None, rate_wpm: int | None = None) -> Utterance:
    """espeak-ng speech of ``text`` with its timed phones (audio (L,) float32 16 kHz).

    Args:
        voice: an espeak-ng voice variant (:data:`avguide.speech.espeak.VARIANTS`, e.g. "m3", "f4",
            "Annie"; default "m1"). rate_wpm: words per minute (80..450; default 175).
    Raises:
        BadInputError: empty text or one that gives no speech ("..."), unknown voice, rate out of range.
    """
    from avguide.io import MIN_SECONDS
    from avguide.speech.espeak import VARIANTS, Voice, speak

    if not text or not text.strip():
        raise BadInputError("say: the text is empty")
    if voice is not None and voice not in VARIANTS:
        raise BadInputError(f"--voice {voice!r}: unknown; choose one of {', '.join(VARIANTS)}")
    v = Voice(variant=voice or VARIANTS[0], rate_wpm=175 if rate_wpm is None else int(rate_wpm))
    errors = v.check()
    if errors:
        raise BadInputError("--rate: " + "; ".join(errors))
    utterance = speak(text.strip(), v)
    audio = utterance.audio
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) if len(audio) else 0.0
    if len(audio) < MIN_SECONDS * AUDIO_RATE or rms < SILENCE_RMS:
        raise BadInputError(f"say: {text.strip()[:60]!r} gives no speech (espeak-ng pronounces nothing in it)")
    return utterance


def slug(text: str, limit: int = 40) -> str:
    """A file name from a sentence: lower case words joined by ``_`` ("say" when nothing is left)."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    out = "_".join(words)[:limit].rstrip("_")
    return out or "say"


def _check_stem(name: str) -> str:
    """``--name``: a file stem, never a path (no separator, no leading dot), at most
    :data:`MAX_STEM` characters."""
    if not re.fullmatch(r"[^/\\\x00-\x1f]+", name) or name.startswith(".") or len(name) > MAX_STEM:
        raise BadInputError(f"--name {name[:80]!r}: must be a file name stem of at most {MAX_STEM} characters, "
                            "without '/', control characters or a leading '.'")
    return name


def say(text: str, out_dir: str | Path, *, voice: str | None = None, rate_wpm: int | None = None,
        name: str | None = None, checkpoint: str | Path = "default", subject: str | None = None,
        formats: Sequence[str] = DEFAULT_FORMATS, seed: int = 0, progress: bool = True) -> dict:
    """``avguide say``: text -> espeak-ng speech -> a talking head (no training needed).

    Writes ``<name>.wav`` (the speech) and the requested formats; ``name`` defaults to a slug of
    the text. Returns the dict of :func:`animate_files` for the one clip.
    """
    formats = parse_formats(formats)
    proc = start_frame_process() if "mp4" in formats else None  # first: it loads numba while torch loads here
    _passive_openmp()
    try:
        import torch

        from avguide.audio.io import save_wav
        from avguide.io import check_output_file

        torch.manual_seed(seed)
        stem = _check_stem(name) if name else slug(text)
        out = _check_outputs(out_dir, [stem], formats)
        check_output_file(out / f"{stem}.wav", "-o")
        anim = load_animator(checkpoint)
        base, faces, style = face_template(anim, subject)
        check_formats(anim, base, faces, formats)
        utterance = speak_utterance(text, voice, rate_wpm)
        wav = utterance.audio
        n = n_frames_of(anim, len(wav))
        outputs = write_outputs(out, stem, animate_speech(anim, wav, base, style), n, wav, anim, base, faces, formats,
                                caption=text if len(text) <= 60 else text[:57] + "...", progress=progress,
                                frame_process=_frame_process(proc), phones=utterance.phones,
                                phones_info={"phones_source": "espeak-ng's own phone timings"})
    finally:
        _end_frame_process(proc)
    save_wav(out / f"{stem}.wav", wav, AUDIO_RATE)
    outputs["wav"] = str(out / f"{stem}.wav")
    return {**_result(text, stem, n, anim, style, outputs), "seconds": len(wav) / AUDIO_RATE}


def predict_split(run: str | Path, data: str | Path, split: str, out_dir: str | Path, *,
                  batch_size: int = 8, which: str = "best") -> list[Path]:
    """Predict every recording of a dataset split on its subject's own face (subjects the
    dataset trains on in their own style, others in its first training subject's) and write
    ``<name>.npy`` files, (T, V*3) at the dataset's frame count, for ``avguide evaluate``.

    Args:
        run: animator run or shipped name. data: the dataset.
        split: "train", "val", "test", ... or "all" (every recording, also those in no split).
        out_dir: output folder (paths checked before any work).
    Returns:
        The written paths.
    Raises:
        BadInputError: an empty split, a model for another mesh, an output path in the way.
    """
    import torch

    from avguide.data.batching import RecordingDataset, make_loader
    from avguide.data.layouts import open_dataset
    from avguide.io import save_npy_atomic

    index = open_dataset(data)
    refs = list(index.samples) if split == "all" else index.split(split)
    if not refs:
        raise BadInputError(f"{data}: no recordings in split {split!r}")
    _check_outputs(out_dir, [r.name for r in refs], ["npy"])
    anim = load_animator(run, which)
    n_v = int(anim.config["dataset"]["n_vertices"])
    if n_v != index.n_vertices:
        raise BadInputError(f"{data}: its meshes have {index.n_vertices} vertices, the model {anim.checkpoint} "
                            f"animates {n_v}")
    loader = make_loader(RecordingDataset(index, refs), batch_size, shuffle=False, seed=0)
    device = next(anim.model.parameters()).device
    paths = []
    for batch in loader:
        batch = batch.to(device)
        with torch.no_grad():
            pred = anim.model.generate(batch.audio, batch.audio_lengths, batch.template, batch.subject.clamp(min=0),
                                       n_frames=batch.lengths)
        for i, name in enumerate(batch.names):
            n = int(batch.lengths[i])
            p = Path(out_dir) / f"{name}.npy"
            save_npy_atomic(p, pred[i, :n].reshape(n, -1).cpu().numpy().astype(np.float32))
            paths.append(p)
    return paths
