"""Bad inputs through the real CLI (issue 21): usage errors of every command, synth, render,
evaluate (with the dataset loaders behind it), animate and say (with the shipped model), train
(refusals before the run is made), bench.

Every case checks the contract for a user's mistake: exit status 2, exactly one line on stderr
naming the file or argument, no traceback, and nothing written or lost (the output absent,
inputs unchanged). Cases are grouped by the issue's defect classes: silent wrong results (1),
output problems (3), malformed arrays and metadata (4), weaker errors (5).
"""

import hashlib
import json
import os
import pickle
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avguide.cli import main

TEST_SEQ = "Synth03_sentence02"      # the test split of the fixture set
TRAIN_SEQS = ("Synth01_sentence01", "Synth01_sentence02")


def snapshot(*roots: Path) -> dict[str, tuple[int, str]]:
    """{path: (size, sha1)} of every file under ``roots`` (a file root is itself)."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            out[str(p)] = (p.stat().st_size, hashlib.sha1(p.read_bytes()).hexdigest())
    return out


def run_cli(capsys, argv: list) -> tuple[int, str, str]:
    """``avguide ARGV`` in this process: (exit status, stdout, stderr); a traceback propagates."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_refused(capsys, argv: list, *names) -> str:
    """Status 2, exactly one stderr line ``avguide <command>: error: ...`` naming each of
    ``names``, no traceback. Returns the line."""
    rc, _, err = run_cli(capsys, argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, f"exit {rc}, stderr: {err}"
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith(f"avguide {argv[0]}: error: "), lines[0]
    assert "Traceback" not in err
    for name in names:
        assert str(name) in lines[0], f"{name!r} not in {lines[0]!r}"
    return lines[0]


def _ffmpeg_children() -> list[int]:
    """Live processes started by this one whose name contains ffmpeg."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text.split("(", 1)[1].rsplit(")", 1)
        state, ppid = rest.split()[:2]
        if int(ppid) == os.getpid() and "ffmpeg" in name and state != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.fixture
def no_rendering(monkeypatch):
    """Fails the test if ``render`` reaches the renderer: every argument and file is checked
    before :func:`avguide.render.video.render_video` (the work) is called."""
    import avguide.render.video as video

    def refuse(*a, **k):
        raise AssertionError("rendering started before the inputs were checked")

    monkeypatch.setattr(video, "render_video", refuse)


@pytest.fixture
def preds(dataset, tmp_path) -> Path:
    """A prediction folder holding the test split (the ground truth itself)."""
    d = tmp_path / "pred"
    d.mkdir()
    (d / f"{TEST_SEQ}.npy").write_bytes((dataset / "vertices_npy" / f"{TEST_SEQ}.npy").read_bytes())
    return d


# ============================================================================ usage errors
@pytest.mark.parametrize("argv, names", [
    (["render"], ["verts", "-o/--out"]),
    (["render", "v.npy", "-o", "o.mp4", "--fps", "fast"], ["--fps", "'fast'"]),
    (["render", "v.npy", "-o", "o.mp4", "--view", "side"], ["--view", "'side'"]),
    (["render", "v.npy", "-o", "o.mp4", "--bogus"], ["unrecognized arguments: --bogus"]),
    (["render", "v.npy", "-o", "o.mp4", "stray"], ["unrecognized arguments: stray"]),
    (["synth", "-o", "set", "--seed"], ["--seed", "expected one argument"]),
    (["synth", "-o", "set", "--seed", "1.5"], ["--seed", "'1.5'"]),
    (["train", "--stage", "gan", "-o", "run"], ["--stage", "'gan'"]),
    (["train", "--stage", "baseline", "-o", "run", "--resume", "run"], ["--resume", "not allowed with"]),
    (["animate", "-o", "out"], ["speech"]),
    (["say", "hello", "-o", "out", "--rate", "fast"], ["--rate", "'fast'"]),
    (["say", "hello", "-o", "out", "--seed", "-1"], ["--seed", "must be in [0, 4294967295]"]),
    (["evaluate", "--pred", "p", "--data", "d"], ["-o/--out"]),
    (["evaluate", "--pred", "p", "--data", "d", "-o", "r.json", "--decode", "magic"], ["--decode"]),
    (["bench", "-o", "b", "--config"], ["--config", "expected one argument"]),
    (["models", "extra=1"], ["unrecognized arguments: extra=1"]),
    (["serve", "--port", "http"], ["--port", "'http'"]),
])
def test_usage_errors_are_one_line_naming_the_argument(argv, names, tmp_path, capsys, monkeypatch):
    """Issue 21: argparse printed its whole usage before the error; now one line, status 2."""
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert e.value.code == 2 and out == "", (e.value.code, out)
    assert len(lines) == 1 and lines[0].startswith(f"avguide {argv[0]}: error: "), err
    assert lines[0].endswith(f"(see avguide {argv[0]} --help)")
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, line", [
    ([], "avguide: error: the following arguments are required: command (see avguide --help)"),
    (["rendr"], "avguide: error: argument command: invalid choice: 'rendr'"),
])
def test_usage_errors_of_the_program_itself(argv, line):
    r = subprocess.run([sys.executable, "-m", "avguide.cli", *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith(line), r.stderr


def test_help_still_prints_the_usage(capsys):
    with pytest.raises(SystemExit) as e:
        main(["render", "--help"])
    assert e.value.code == 0 and "usage: avguide render" in capsys.readouterr().out


# ============================================================================ render
def _write_bad_vertices(case: str, p: Path, good: np.ndarray) -> str:
    """Write a malformed vertex file; returns words the error line must contain."""
    if case == "zero_frames":
        np.save(p, good[:0])
        return "0 frame(s)"
    if case == "zero_d":
        np.save(p, np.float32(1.0))
        return "0-d array"
    if case == "npz_as_npy":
        with open(p, "wb") as f:
            np.savez(f, a=good, b=good)
        return ".npz archive"
    if case == "object_array":
        np.save(p, np.array([good, 1], dtype=object), allow_pickle=True)
        return "pickled Python objects"
    if case == "nan":
        bad = good.copy()
        bad[3, 5] = np.nan
        np.save(p, bad)
        return "NaN or inf (first: frame 3)"
    if case == "inf":
        bad = good.copy()
        bad[-1, 0] = np.inf
        np.save(p, bad)
        return "NaN or inf"
    if case == "wrong_width":
        np.save(p, good[:, :30])
        return "10 vertices"
    if case == "one_dim":
        np.save(p, good[0])
        return "expected vertices"
    if case == "truncated":
        np.save(p, good)
        p.write_bytes(p.read_bytes()[:300])
        return "not a readable"
    if case == "not_numpy":
        p.write_text("hello\n")
        return "not a .npy"
    if case == "all_coincident":
        np.save(p, np.zeros_like(good))
        return "at the same point"
    if case == "huge":  # finite, but the camera's float32 arithmetic overflows
        bad = good.copy()
        bad[4] *= 1e30
        np.save(p, bad)
        return "frame 4 has a coordinate of"
    if case == "missing":
        return "not found"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["zero_frames", "zero_d", "npz_as_npy", "object_array", "nan", "inf",
                                  "wrong_width", "one_dim", "truncated", "not_numpy", "all_coincident",
                                  "huge", "missing"])
def test_render_malformed_vertices(case, synth_set, tmp_path, capsys, no_rendering):
    good = np.load(synth_set / "vertices_npy" / f"{TEST_SEQ}.npy")
    bad = tmp_path / "verts.npy"
    words = _write_bad_vertices(case, bad, good)
    out = tmp_path / "o.mp4"
    assert_refused(capsys, ["render", bad, "-o", out, "--size", "16"], bad, words)
    assert not out.exists()


def test_render_bad_file_in_grid_is_named(synth_set, tmp_path, capsys, no_rendering):
    good = synth_set / "vertices_npy" / f"{TEST_SEQ}.npy"
    bad = tmp_path / "avguided.npy"
    _write_bad_vertices("nan", bad, np.load(good))
    assert_refused(capsys, ["render", good, "--grid", good, bad, "-o", tmp_path / "o.mp4", "--size", "16"],
                   bad, "frame 3")


@pytest.mark.parametrize("fps", ["nan", "inf", "-inf", "0", "-25", "1e-9", "1e12"])
def test_render_fps_must_be_finite_and_positive(fps, synth_set, tmp_path, capsys, no_rendering):
    verts = synth_set / "vertices_npy" / f"{TEST_SEQ}.npy"
    assert_refused(capsys, ["render", verts, "-o", tmp_path / "o.mp4", f"--fps={fps}"], "--fps")
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("faces, words", [
    (np.array([[0, 1, 2], [0, 1, -2]]), "negative index -2"),
    (np.array([[0, 1, 4742]]), "index 4742"),
    (np.zeros((4, 3), np.float32), "must be integers"),
    (np.arange(9), "expected faces (F, 3)"),
])
def test_render_bad_faces(faces, words, synth_set, tmp_path, capsys, no_rendering):
    verts = synth_set / "vertices_npy" / f"{TEST_SEQ}.npy"
    fp = tmp_path / "faces.npy"
    np.save(fp, faces)
    assert_refused(capsys, ["render", verts, "--faces", fp, "-o", tmp_path / "o.mp4", "--size", "16"], fp, words)
    assert not (tmp_path / "o.mp4").exists()
    assert _ffmpeg_children() == []  # issue 21: a negative index used to leave ffmpeg behind


def test_render_bad_template_mesh(synth_set, tmp_path, capsys, no_rendering):
    verts = synth_set / "vertices_npy" / f"{TEST_SEQ}.npy"
    mesh = tmp_path / "head.ply"
    mesh.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n1 2\n")
    assert_refused(capsys, ["render", verts, "--template", mesh, "-o", tmp_path / "o.mp4"], mesh)


@pytest.mark.parametrize("case", ["corrupt", "empty", "too_long"])
def test_render_bad_audio(case, synth_set, tmp_path, capsys, no_rendering):
    verts = synth_set / "vertices_npy" / f"{TEST_SEQ}.npy"
    wav = tmp_path / "speech.wav"
    names = [wav]
    if case == "corrupt":
        wav.write_bytes(b"RIFF" + bytes(60))
    elif case == "empty":
        sf.write(wav, np.zeros(0, np.float32), 16000)
    else:
        sf.write(wav, np.zeros(16000 * 10, np.float32), 16000)  # 10 s for a ~2.5 s sequence
        names.append(verts)
    assert_refused(capsys, ["render", verts, "--audio", wav, "-o", tmp_path / "o.mp4"], *names)
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("argv, names", [
    (["--size", "15"], ["--size"]),
    (["--size", "100000"], ["--size"]),
    (["--captions", "a,b"], ["--captions"]),
    (["--size", "4096", "--grid", *["{verts}"] * 4], ["--size 4096", "20480 pixels wide"]),
])
def test_render_bad_arguments(argv, names, synth_set, tmp_path, capsys, no_rendering):
    verts = synth_set / "vertices_npy" / f"{TEST_SEQ}.npy"
    argv = [str(a).format(verts=verts) for a in argv]
    assert_refused(capsys, ["render", verts, "-o", tmp_path / "o.mp4", *argv], *names)


@pytest.mark.parametrize("where", ["directory", "trailing_slash", "under_a_file", "read_only", "an_input"])
def test_render_output_checked_before_rendering(where, synth_set, tmp_path, capsys, no_rendering):
    verts = tmp_path / "in.npy"
    verts.write_bytes((synth_set / "vertices_npy" / f"{TEST_SEQ}.npy").read_bytes())
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "keep.mp4").write_bytes(b"old video")
    out = {"directory": tmp_path / "videos", "trailing_slash": f"{tmp_path}/new/",
           "under_a_file": verts / "o.mp4", "read_only": Path("/sys/avguide-test.mp4"),
           "an_input": verts}[where]
    before = snapshot(tmp_path)
    assert_refused(capsys, ["render", verts, "-o", out], "-o", str(out).rstrip("/"))
    assert snapshot(tmp_path) == before and not (tmp_path / "new").exists()


def test_render_fps_nan_in_a_real_process(synth_set, tmp_path):
    verts = synth_set / "vertices_npy" / f"{TEST_SEQ}.npy"
    r = subprocess.run([sys.executable, "-m", "avguide.cli", "render", str(verts), "-o", str(tmp_path / "o.mp4"),
                        "--fps", "nan"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "avguide render: error: --fps nan: must be a number of frames per second in [1, 1000]"]
    assert list(tmp_path.iterdir()) == []


# ============================================================================ evaluate + datasets
def _evaluate(dataset, preds, out, *extra):
    return ["evaluate", "--pred", preds, "--data", dataset, "-o", out, *extra]


def _pickle_evil(path: Path, marker: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    path.write_bytes(pickle.dumps({"Synth01": Evil()}))


def _break_dataset(case: str, root: Path, tmp_path: Path) -> tuple[Path, str]:
    """Damage one file of the dataset; returns (the file the error must name, a word of it)."""
    manifest = root / "manifest.json"
    m = json.loads(manifest.read_text())
    if case == "manifest_splits_list":
        m["splits"] = [n for names in m["splits"].values() for n in names]
        manifest.write_text(json.dumps(m))
        return manifest, "'splits' must be an object"
    if case == "manifest_truncated":
        manifest.write_bytes(manifest.read_bytes()[:100])
        return manifest, "corrupt manifest"
    if case == "manifest_fps_text":
        m["fps"] = "thirty"
        manifest.write_text(json.dumps(m))
        return manifest, "'fps' must be a number of frames per second"
    if case == "manifest_binary":
        manifest.write_bytes(bytes(range(256)))
        return manifest, "not a UTF-8"
    if case == "templates_strings":
        (root / "templates.pkl").write_bytes(pickle.dumps({"Synth01": "0 0 0", "Synth02": "x", "Synth03": "y"}))
        return root / "templates.pkl", "template of 'Synth01' is str"
    if case == "templates_malicious":
        _pickle_evil(root / "templates.pkl", tmp_path / "pwned")
        return root / "templates.pkl", "forbidden global"
    if case == "templates_truncated":
        p = root / "templates.pkl"
        p.write_bytes(p.read_bytes()[:50])
        return p, "corrupt templates pickle"
    if case == "lips_out_of_range":
        (root / "regions" / "lips.txt").write_text("1, 2, 99999\n")
        return root / "regions" / "lips.txt", "index 99999"
    if case == "lips_not_integers":
        (root / "regions" / "lips.txt").write_text("1, 2, lips\n")
        return root / "regions" / "lips.txt", "'lips' is not an integer"
    if case == "lips_empty":
        (root / "regions" / "lips.txt").write_text("\n")
        return root / "regions" / "lips.txt", "empty"
    if case == "faces_negative":
        faces = np.load(root / "faces.npy")
        faces[0, 0] = -1
        np.save(root / "faces.npy", faces)
        return root / "faces.npy", "negative index -1"
    if case == "gt_nan":
        p = root / "vertices_npy" / f"{TEST_SEQ}.npy"
        v = np.load(p)
        v[7, 0] = np.nan
        np.save(p, v)
        return p, "frame 7"
    if case == "gt_zero_d":
        p = root / "vertices_npy" / f"{TEST_SEQ}.npy"
        np.save(p, np.float32(0))
        return p, "0-d"
    if case == "manifest_fps_huge":  # finite, but no frame rate: the phone windows would not fit in memory
        m["fps"] = 1e308
        manifest.write_text(json.dumps(m))
        return manifest, "'fps' must be a number of frames per second in [1, 1000]"
    alignment = root / "alignments" / f"{TEST_SEQ}.json"
    if case == "alignment_truncated":
        alignment.write_bytes(alignment.read_bytes()[:40])
        return alignment, "corrupt alignment"
    if case == "alignment_no_phones":
        alignment.write_text('{"text": "hello"}')
        return alignment, "expected a 'phones' list"
    if case == "alignment_bad_times":
        alignment.write_text('{"phones": [["_", 0.0, 0.2], ["m", 0.5, 0.1]]}')
        return alignment, "phones[1]"
    if case == "alignment_unknown_phoneme":
        alignment.write_text('{"phones": [["Q!", 0.0, 0.1]]}')
        return alignment, "phoneme 'Q!' has no viseme class"
    if case == "upper_lip_misplaced":  # in range, but no vertex of it near the mouth's mid-line
        (root / "regions" / "upper_lip.txt").write_text("0, 1, 2\n")
        return root / "regions", "upper_lip / lower_lip regions do not fit the template of Synth03"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["manifest_splits_list", "manifest_truncated", "manifest_fps_text",
                                  "manifest_binary", "templates_strings", "templates_malicious",
                                  "templates_truncated", "lips_out_of_range", "lips_not_integers", "lips_empty",
                                  "faces_negative", "gt_nan", "gt_zero_d", "manifest_fps_huge",
                                  "alignment_truncated", "alignment_no_phones", "alignment_bad_times",
                                  "alignment_unknown_phoneme", "upper_lip_misplaced"])
def test_evaluate_broken_dataset_names_the_file(case, dataset, preds, synth_set, tmp_path, capsys):
    if case.startswith(("alignment", "upper_lip")):  # the articulation metrics read them
        import shutil
        shutil.copytree(synth_set / "alignments", dataset / "alignments")
    bad, words = _break_dataset(case, dataset, tmp_path)
    before = snapshot(dataset, preds)
    out = tmp_path / "report.json"
    assert_refused(capsys, _evaluate(dataset, preds, out), bad, words)
    assert not out.exists() and snapshot(dataset, preds) == before
    assert not (tmp_path / "pwned").exists()  # the malicious pickle never ran


@pytest.mark.parametrize("case", ["nan", "wrong_width", "zero_frames", "object_array", "truncated"])
def test_evaluate_malformed_prediction(case, dataset, preds, tmp_path, capsys):
    p = preds / f"{TEST_SEQ}.npy"
    words = _write_bad_vertices(case, p, np.load(p))
    out = tmp_path / "report.json"
    assert_refused(capsys, _evaluate(dataset, preds, out), p, words)
    assert not out.exists()


def test_evaluate_refuses_predictions_spanning_splits(dataset, preds, tmp_path, capsys):
    """Issue 21, class 1: training-split files used to be scored with the test set, silently."""
    for name in TRAIN_SEQS:
        (preds / f"{name}.npy").write_bytes((dataset / "vertices_npy" / f"{name}.npy").read_bytes())
    out = tmp_path / "report.json"
    assert_refused(capsys, _evaluate(dataset, preds, out), preds, "test (1), train (2)", "split=")
    assert not out.exists()


def test_evaluate_refuses_an_incomplete_split(dataset, tmp_path, capsys):
    """Issue 21, class 1: an incomplete set used to be scored with no word."""
    preds = tmp_path / "pred"
    preds.mkdir()
    name = TRAIN_SEQS[0]
    (preds / f"{name}.npy").write_bytes((dataset / "vertices_npy" / f"{name}.npy").read_bytes())
    out = tmp_path / "report.json"
    assert_refused(capsys, _evaluate(dataset, preds, out), preds, "1 of 2", "split train", TRAIN_SEQS[1],
                   "allow_missing")
    assert_refused(capsys, _evaluate(dataset, preds, out, "split=test"), preds, "1 of 1", "split test", TEST_SEQ)
    assert not out.exists()
    # asked for explicitly, a partial score is given and says what is missing
    rc, stdout, _ = run_cli(capsys, _evaluate(dataset, preds, out, "allow_missing=true"))
    assert rc == 0 and "Scored split train (inferred from the predictions): 1 of 2 sequences" in stdout
    assert f"MISSING (not scored): 1: {TRAIN_SEQS[1]}" in stdout
    assert json.loads(out.read_text())["missing_predictions"] == [TRAIN_SEQS[1]]


def test_evaluate_with_split_reports_what_it_ignored(dataset, preds, tmp_path, capsys):
    extra = preds / f"{TRAIN_SEQS[0]}.npy"
    extra.write_bytes((dataset / "vertices_npy" / f"{TRAIN_SEQS[0]}.npy").read_bytes())
    out = tmp_path / "report.json"
    rc, stdout, err = run_cli(capsys, _evaluate(dataset, preds, out, "split=test"))
    assert rc == 0, err
    assert "Scored split test (argument): 1 of 1 sequences predicted." in stdout
    assert f"IGNORED, outside the split: 1 file(s): {extra.name}" in stdout
    report = json.loads(out.read_text())
    assert report["ignored_predictions"] == [str(extra)] and report["summary"]["count_sequences"] == 1
    assert report["summary"]["lve"]["mean_over_frames"] == 0.0  # the ground truth scored against itself


@pytest.mark.parametrize("case", ["pred_dir_missing", "pred_dir_empty", "unknown_prediction", "config_binary", "config_bad_key",
                                  "unknown_split", "decoding_without_reader", "config_nan", "config_duplicate_key"])
def test_evaluate_bad_arguments(case, dataset, preds, tmp_path, capsys):
    out = tmp_path / "report.json"
    extra, names = [], []
    if case == "pred_dir_missing":
        preds = tmp_path / "nowhere"
        names = [preds, "not found"]
    elif case == "pred_dir_empty":
        preds = tmp_path / "empty"
        preds.mkdir()
        names = [preds, "no .npy or .npz"]
    elif case == "unknown_prediction":
        (preds / "Nobody_sentence01.npy").write_bytes(b"")
        names = [preds, "Nobody_sentence01.npy"]
    elif case == "config_binary":
        cfg = tmp_path / "eval.yaml"
        cfg.write_bytes(bytes(range(256)) * 4)
        extra, names = ["--config", cfg], [cfg, "not a UTF-8"]
    elif case == "config_bad_key":
        cfg = tmp_path / "eval.yaml"
        cfg.write_text("split: test\nmax_frame_dif: 3\nreader_batch: 0\n")
        extra, names = ["--config", cfg], [cfg, "max_frame_dif: unknown key"]
    elif case == "decoding_without_reader":  # silently ignored before
        extra, names = ["--ctc-weight", "nan", "--beam", "4"], ["--beam, --ctc-weight: used only with --reader"]
    elif case == "config_nan":
        extra, names = ["max_frame_ratio=nan"], ["max_frame_ratio: must be a finite number"]
    elif case == "config_duplicate_key":  # plain YAML keeps the last value silently
        cfg = tmp_path / "eval.yaml"
        cfg.write_text("split: test\nsplit: train\n")
        extra, names = ["--config", cfg], [cfg, "key 'split' given twice", "line 2"]
    else:
        extra, names = ["split=tset"], ["split: unknown split 'tset'"]
    assert_refused(capsys, _evaluate(dataset, preds, out, *extra), *names)
    assert not out.exists()


@pytest.mark.parametrize("where", ["directory", "read_only_markdown", "markdown_is_the_report", "a_prediction"])
def test_evaluate_unwritable_outputs(where, dataset, preds, tmp_path, capsys):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "old.json").write_text("{}")
    out, extra = tmp_path / "report.json", []
    if where == "directory":
        out = named = tmp_path / "reports"
    elif where == "read_only_markdown":
        extra, named = ["--markdown", "/sys/avguide.md"], "/sys/avguide.md"
    elif where == "markdown_is_the_report":
        extra, named = ["--markdown", out], "--markdown"
    else:
        out = named = preds / f"{TEST_SEQ}.npy"
    before = snapshot(tmp_path / "reports", preds)
    assert_refused(capsys, _evaluate(dataset, preds, out, *extra), named)
    assert snapshot(tmp_path / "reports", preds) == before and not (tmp_path / "report.json").exists()


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))  # the "disk" fills after 1 KiB
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)             # a write past it fails with EFBIG


def test_evaluate_full_disk_leaves_no_half_written_report(dataset, preds, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    r = subprocess.run([sys.executable, "-m", "avguide.cli", *map(str, _evaluate(dataset, preds, out_dir / "report.json"))],
                       capture_output=True, text=True, timeout=180, preexec_fn=_limit_file_size)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert f"{out_dir / 'report.json'}: cannot write (File too large)" in lines[0]
    assert list(out_dir.iterdir()) == []  # neither the report nor a temporary file


# ============================================================================ animate + say
def _speech(path: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32),
             rate)
    return path


@pytest.mark.parametrize("case", ["template_in_millimetres", "template_not_a_face", "output_name_too_long",
                                  "formats_empty", "formats_unknown", "speech_silent", "speech_is_text",
                                  "speech_is_a_directory", "speech_too_short", "subject_unknown"])
def test_animate_refuses_before_writing(case, tmp_path, capsys):
    from avguide.assets.head import load_head

    wav = _speech(tmp_path / "hello.wav")
    out = tmp_path / "out"
    extra, names = [], []
    if case in ("template_in_millimetres", "template_not_a_face"):
        t = tmp_path / "face.npy"
        head = np.asarray(load_head().vertices, np.float32)
        np.save(t, head * 1000 if case == "template_in_millimetres" else np.zeros_like(head))
        extra, names = ["--template", t], [t, "units across", "the model's unit"]
    elif case == "output_name_too_long":  # outputs are named by the input's stem (+ "_arkit.csv" ...)
        wav = wav.rename(tmp_path / ("x" * 230 + ".wav"))
        names = ["-o", "file name of", "at most 200"]
    elif case == "formats_empty":
        extra, names = ["--formats", ","], ["--formats ','", "no format given"]
    elif case == "formats_unknown":
        extra, names = ["--formats", "npy,gif"], ["--formats", "gif"]
    elif case == "speech_silent":
        sf.write(wav, np.zeros(16000, np.float32), 16000)
        names = [wav, "silent"]
    elif case == "speech_is_text":
        wav.write_text("hello")
        names = [wav, "not a readable audio file", "neither libsndfile nor ffmpeg"]
    elif case == "speech_is_a_directory":
        wav.unlink()
        wav.mkdir()
        names = [wav, "is a directory"]
    elif case == "speech_too_short":
        _speech(wav, 0.05)
        names = [wav, "too short"]
    else:
        extra, names = ["--subject", "Nobody"], ["--subject 'Nobody'"]
    before = snapshot(tmp_path)
    assert_refused(capsys, ["animate", wav, "-o", out, "--formats", "npy", "--no-progress", *extra], *names)
    assert snapshot(tmp_path) == before and not out.exists()


def _video(path: Path, sound: bool) -> Path:
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=red:s=32x32:d=1"]
    if sound:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=300:duration=1", "-c:a", "aac"]
    subprocess.run([*cmd, "-c:v", "libx264", "-shortest", str(path)], check=True, timeout=120)
    return path


def test_animate_reads_the_sound_of_a_video(tmp_path, capsys):
    """The help promises any format ffmpeg reads: libsndfile refuses an mp4, ffmpeg decodes it."""
    video = _video(tmp_path / "clip.mp4", sound=True)
    rc, out, err = run_cli(capsys, ["animate", video, "-o", tmp_path / "out", "--formats", "npy", "--no-progress"])
    assert rc == 0, err
    assert np.load(tmp_path / "out" / "clip.npy").shape == (30, 4742 * 3)
    silent = _video(tmp_path / "silent.mp4", sound=False)
    assert_refused(capsys, ["animate", silent, "-o", tmp_path / "out2", "--formats", "npy"], silent,
                   "not a readable audio file", "does not contain any stream")
    assert not (tmp_path / "out2").exists()


@pytest.mark.parametrize("argv, names", [
    (["hello", "--name", "../evil"], ["--name '../evil'", "without '/'"]),
    (["hello", "--name", "a/b"], ["--name 'a/b'"]),
    (["hello", "--name", "."], ["--name '.'", "leading '.'"]),
    (["hello", "--name", "x" * 300], ["--name", "at most 120 characters"]),
    (["..."], ["'...' gives no speech"]),
    (["   "], ["the text is empty"]),
    (["hello", "--voice", "robot"], ["--voice 'robot'"]),
    (["hello", "--rate", "20"], ["--rate", "80..450"]),
])
def test_say_refuses_before_writing(argv, names, tmp_path, capsys):
    out = tmp_path / "out"
    assert_refused(capsys, ["say", *argv, "-o", out, "--formats", "npy", "--no-progress"], *names)
    assert list(tmp_path.iterdir()) == []


# ============================================================================ train
TRAIN_TINY = ["preset=tiny", "optim.batch_size=2", "optim.epochs=1"]


@pytest.mark.parametrize("case", ["out_is_the_dataset", "out_empty", "out_unwritable", "device_without_cuda",
                                  "seed_negative", "config_duplicate_key", "wav_wrong_rate", "wav_corrupt",
                                  "durations_disagree", "vertices_truncated", "expert_missing"])
def test_train_refuses_before_the_run_is_made(case, dataset, tmp_path, capsys, monkeypatch):
    """Arguments, the device, the output and every recording's headers are checked before the run
    directory is made (a corrupt recording used to surface in the first epoch, a wrong expert
    after the run had been created)."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    stage, extra, names = "baseline", [], []
    wav = dataset / "wav" / f"{TRAIN_SEQS[1]}.wav"
    verts = dataset / "vertices_npy" / f"{TRAIN_SEQS[1]}.npy"
    if case == "out_is_the_dataset":  # someone's folder: the run's files would be mixed into it
        out, names = dataset, ["--out", dataset, "not empty and holds no run"]
    elif case == "out_empty":
        out, names = "", ["--out: empty path"]
    elif case == "out_unwritable":
        out, names = Path("/proc/avguide-run"), ["--out /proc/avguide-run", "cannot write in /proc"]
    elif case == "device_without_cuda":
        import torch
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        extra, names = ["device=cuda"], ["device=cuda: no CUDA device 0", "device=cpu"]
    elif case == "seed_negative":
        extra, names = ["seed=-5"], ["seed: must be an integer in [0, 4294967295]"]
    elif case == "config_duplicate_key":
        cfg = tmp_path / "train.yaml"
        cfg.write_text("optim:\n  lr: 1e-3\n  lr: 1e-4\n")
        extra, names = ["--config", cfg], [cfg, "key 'lr' given twice"]
    elif case == "wav_wrong_rate":  # the synthetic layout promises 16 kHz mono
        sf.write(wav, np.zeros(44100, np.float32) + 0.1, 44100)
        names = [wav, "expected 16000 Hz mono audio, got 44100 Hz"]
    elif case == "wav_corrupt":
        wav.write_bytes(b"RIFF" + bytes(40))
        names = [wav, "not a readable audio file"]
    elif case == "durations_disagree":
        np.save(verts, np.load(verts)[:10])
        names = [verts, wav.name, "wrong pairing or frame rate"]
    elif case == "vertices_truncated":
        verts.write_bytes(verts.read_bytes()[:1000])
        names = [verts, "not a readable"]
    else:
        stage, extra, names = "av", ["--expert", tmp_path / "no-expert"], [tmp_path / "no-expert"]
    before = snapshot(tmp_path)
    assert_refused(capsys, ["train", "--stage", stage, "--data", dataset, "-o", out, *TRAIN_TINY, *extra], *names)
    assert snapshot(tmp_path) == before and not (tmp_path / "run").exists()


# ============================================================================ synth
def test_synth_removes_only_its_own_stale_files(synth_set, tmp_path, capsys):
    """Issue 21, class 5: re-running synth over a bigger older set left its extra recordings."""
    out = tmp_path / "set"
    import shutil
    shutil.copytree(synth_set, out)
    m = json.loads((out / "manifest.json").read_text())
    old = "Synth01_sentence03"  # a recording of the older, bigger set, listed in its manifest
    m["recordings"][old] = 10
    m["subjects"]["Synth04"] = m["subjects"]["Synth01"]
    (out / "manifest.json").write_text(json.dumps(m))
    stale = [out / "wav" / f"{old}.wav", out / "vertices_npy" / f"{old}.npy",
             out / "blendshapes_npy" / f"{old}.npy", out / "alignments" / f"{old}.json",
             out / "sentencestext" / "Synth04.txt"]
    for p in stale:
        p.write_bytes(b"old")
    mine = [out / "wav" / "my_own_recording.wav", out / "notes.txt"]
    for p in mine:
        p.write_bytes(b"the user's")
    rc, _, err = run_cli(capsys, ["synth", "--out", out, "subjects=3", "sentences=2", "workers=1"])
    assert rc == 0, err
    assert [p for p in stale if p.exists()] == []
    assert all(p.read_bytes() == b"the user's" for p in mine)
    new = json.loads((out / "manifest.json").read_text())["recordings"]
    assert sorted(p.stem for p in (out / "vertices_npy").glob("*.npy")) == sorted(new) == sorted(
        json.loads((synth_set / "manifest.json").read_text())["recordings"])


@pytest.mark.parametrize("case", ["config_binary", "config_latin1", "config_not_mapping", "too_few_subjects",
                                  "out_is_a_file", "out_read_only", "out_foreign_dir", "out_foreign_manifest",
                                  "out_manifest_names_a_path", "config_duplicate_key", "seed_negative",
                                  "subjects_huge", "float_not_finite", "out_empty"])
def test_synth_bad_input(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "-o ''" must not fill the working directory
    out = tmp_path / "set"
    argv = ["synth", "--out", out, "subjects=3", "sentences=2", "workers=1"]
    cfg = tmp_path / "synth.yaml"
    if case == "config_binary":
        cfg.write_bytes(np.random.default_rng(0).bytes(400))
        argv, names = argv + ["--config", cfg], [cfg, "not a UTF-8"]
    elif case == "config_latin1":
        cfg.write_bytes("seed: 1  # Zürich\n".encode("latin-1"))
        argv, names = argv + ["--config", cfg], [cfg]
    elif case == "config_not_mapping":
        cfg.write_text("- subjects\n- 3\n")
        argv, names = argv + ["--config", cfg], [cfg, "mapping"]
    elif case == "too_few_subjects":  # every problem, on the one line
        argv, names = argv + ["subjects=2", "fps=500"], ["subjects: need at least 3", "fps: must be in"]
    elif case == "config_duplicate_key":  # plain YAML keeps the last one: 4 subjects x 40 sentences
        cfg.write_text("subjects: 3\nsubjects: 4\n")
        argv, names = argv + ["--config", cfg], [cfg, "key 'subjects' given twice"]
    elif case == "seed_negative":  # was a traceback from the sentence generator
        argv, names = argv + ["seed=-1"], ["seed: must be an integer in [0, 4294967295], got -1"]
    elif case == "subjects_huge":  # hung, building 10**20 subject names
        argv, names = argv + ["subjects=100000000000000000000"], ["subjects: need at least 3", "at most 999"]
    elif case == "float_not_finite":
        argv, names = argv + ["speakers_per_sentence=nan", "identity_strength=inf"], [
            "speakers_per_sentence: must be a finite number", "identity_strength: must be a finite number"]
    elif case == "out_empty":  # "" is the current directory to Path: it used to be filled
        argv[2], names = "", ["--out: empty path"]
    elif case == "out_is_a_file":
        out.write_text("precious")
        names = ["--out", out]
    elif case == "out_read_only":
        out = Path("/sys/avguide-synth-test")
        argv[2], names = out, ["--out", out]
    elif case == "out_foreign_dir":
        out.mkdir()
        (out / "thesis.tex").write_text("precious")
        names = ["--out", out, "not empty"]
    elif case == "out_foreign_manifest":
        out.mkdir()
        (out / "manifest.json").write_text('{"generator": "someone else"}')
        (out / "wav").mkdir()
        names = ["--out", out, "not written by avguide synth"]
    else:  # stale-file removal must never follow a name out of the set
        (out / "wav").mkdir(parents=True)
        (tmp_path / "victim.wav").write_text("precious")
        (out / "manifest.json").write_text(json.dumps({"generator": "avguide.synth",
                                                       "recordings": {"../../victim": 1}}))
        names = [out / "manifest.json", "'../../victim'"]
    before = snapshot(tmp_path)
    assert_refused(capsys, argv, *names)
    assert snapshot(tmp_path) == before  # nothing written, nothing removed
    assert out.is_file() or not (out / "vertices_npy").exists()  # no generation started


# ============================================================================ bench
@pytest.mark.parametrize("case", ["config_binary", "bad_values", "config_unknown_key"])
def test_bench_bad_input(case, tmp_path, capsys):
    out = tmp_path / "bench"
    cfg = tmp_path / "bench.yaml"
    argv = ["bench", "--out", out]
    if case == "config_binary":
        cfg.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
        argv, names = argv + ["--config", cfg], [cfg, "not a UTF-8"]
    elif case == "bad_values":
        argv, names = argv + ["animators=[pix2pix]", "seeds=[1,1]"], ["animators", "seeds"]
    else:
        cfg.write_text("epochz: 3\n")
        argv, names = argv + ["--config", cfg], [cfg, "epochz: unknown key"]
    assert_refused(capsys, argv, *names)
    assert not out.exists()


def test_bench_out_is_a_file(tmp_path, capsys):
    out = tmp_path / "bench"
    out.write_text("precious")
    assert_refused(capsys, ["bench", "--out", out], "--out", out)
    assert out.read_text() == "precious"


@pytest.mark.parametrize("content, words", [("{", "corrupt bench config record"),
                                            ("[1, 2]", "expected a JSON object")])
def test_bench_corrupt_record_of_an_earlier_run(content, words, tmp_path, capsys):
    """A benchmark directory is continued: its records are read through the boundary layer."""
    out = tmp_path / "bench"
    out.mkdir()
    (out / "bench_config.json").write_text(content)
    before = snapshot(tmp_path)
    assert_refused(capsys, ["bench", "--out", out], out / "bench_config.json", words)
    assert snapshot(tmp_path) == before



def test_serve_refuses_an_address_it_cannot_listen_on_before_loading_a_model(capsys, monkeypatch):
    """A bad host name and a port in use: one line naming --host / --port, before the model loads."""
    import socket

    import avguide.animate

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the address was checked")

    monkeypatch.setattr(avguide.animate, "load_animator", refuse)
    assert_refused(capsys, ["serve", "--host", "999.1.1.1"], "--host 999.1.1.1", "cannot listen")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_refused(capsys, ["serve", "--port", port], f"--port {port}", "cannot listen")
