"""The boundary layer (avguide.io): every broken file is one BadInputError line naming it."""

import errno
import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from avguide import io as aio
from avguide.errors import BadInputError, MissingFileError


def _one_line_naming(excinfo, path, *words):
    msg = str(excinfo.value)
    assert "\n" not in msg and str(path) in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


# ------------------------------------------------------------------------------ text formats
def test_read_text_refuses_binary_and_directories(tmp_path):
    p = tmp_path / "b.yaml"
    p.write_bytes(bytes(range(256)))
    with pytest.raises(BadInputError) as e:
        aio.read_text(p, "config file")
    _one_line_naming(e, p, "not a UTF-8 config file", "byte 0x80 at offset 128")
    with pytest.raises(BadInputError) as e:
        aio.read_text(tmp_path)
    _one_line_naming(e, tmp_path, "is a directory")
    with pytest.raises(MissingFileError):
        aio.read_text(tmp_path / "none.txt")
    (tmp_path / "bom.txt").write_bytes("\ufeffhé".encode("utf-8"))
    assert aio.read_text(tmp_path / "bom.txt") == "hé"


@pytest.mark.parametrize("content, words", [
    (b"", ["empty"]),
    (b'{"checkpoint": "ckpt-0', ["line 1 column"]),
    (b'[1, 2]', ["expected a JSON object", "got array"]),
    (b"\xff\xfe{}", ["not a UTF-8"]),
])
def test_load_json_errors(tmp_path, content, words):
    p = tmp_path / "last.json"
    p.write_bytes(content)
    with pytest.raises(BadInputError) as e:
        aio.load_json(p, "run pointer")
    _one_line_naming(e, p, *words)


def test_load_json_value(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('{"a": [1, 2]}')
    assert aio.load_json(p) == {"a": [1, 2]}
    p.write_text("[3]")
    assert aio.load_json(p, expect=list) == [3]


def test_load_jsonl_partial_tail(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"epoch": 1}\n\n{"epoch": 2}\n{"epo')  # a kill in the middle of the last write
    with pytest.raises(BadInputError) as e:
        aio.load_jsonl(p)
    _one_line_naming(e, p, "line 4 is not JSON")
    assert aio.load_jsonl(p, partial_tail="drop") == [{"epoch": 1}, {"epoch": 2}]
    p.write_text('{"epoch": 1}\n{"epo\n{"epoch": 3}\n')  # a bad line inside is never dropped
    with pytest.raises(BadInputError, match="line 2 is not JSON"):
        aio.load_jsonl(p, partial_tail="drop")


def test_append_jsonl_round_trip(tmp_path):
    p = tmp_path / "run" / "m.jsonl"
    aio.append_jsonl(p, {"epoch": 1, "x": np.float32(0.5)})
    aio.append_jsonl(p, {"epoch": 2})
    assert aio.load_jsonl(p) == [{"epoch": 1, "x": 0.5}, {"epoch": 2}]


def test_load_yaml_errors(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(BadInputError) as e:
        aio.load_yaml(p)
    _one_line_naming(e, p, "invalid YAML file at line")
    p.write_bytes(b"a: 1\x00\n")  # valid UTF-8, but a control character
    with pytest.raises(BadInputError) as e:
        aio.load_yaml(p)
    _one_line_naming(e, p, "invalid YAML")
    p.write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(BadInputError):
        aio.load_yaml(p)
    p.write_text("lr: 1e-3\noptim:\n  epochs: 3\n  epochs: 30\n")  # plain YAML keeps the last, silently
    with pytest.raises(BadInputError) as e:
        aio.load_yaml(p)
    _one_line_naming(e, p, "line 4 column 3: key 'epochs' given twice")
    p.write_text("base: &b {x: 1}\nother:\n  <<: *b\n  x: 2\n")  # a merge key may be overridden
    assert aio.load_yaml(p) == {"base": {"x": 1}, "other": {"x": 2}}


# ------------------------------------------------------------------------------ tensors
def _safetensors_bytes():
    from safetensors.torch import save
    return save({"w": torch.arange(6.0).reshape(2, 3)}, metadata={"v": "1"})


@pytest.mark.parametrize("damage", ["empty", "truncated", "random"])
def test_load_safetensors_damaged(tmp_path, damage):
    good = _safetensors_bytes()
    data = {"empty": b"", "truncated": good[: len(good) - 7],
            "random": np.random.default_rng(0).bytes(300)}[damage]
    p = tmp_path / "model.safetensors"
    p.write_bytes(data)
    with pytest.raises(BadInputError) as e:
        aio.load_safetensors(p, "model weights")
    _one_line_naming(e, p, "model weights")


def test_safetensors_round_trip(tmp_path):
    p = tmp_path / "m.safetensors"
    aio.save_safetensors_atomic(p, {"w": torch.ones(2)}, {"avguide_version": "x"})
    tensors, meta = aio.load_safetensors(p, with_metadata=True)
    assert torch.equal(tensors["w"], torch.ones(2)) and meta == {"avguide_version": "x"}


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("damage", ["empty", "truncated", "random", "evil"])
def test_load_torch_state_damaged(tmp_path, damage, monkeypatch):
    buf = io.BytesIO()
    torch.save({"step": 3, "t": torch.zeros(4)}, buf)
    good = buf.getvalue()
    data = {"empty": b"", "truncated": good[: len(good) // 2],
            "random": np.random.default_rng(1).bytes(500), "evil": None}[damage]
    p = tmp_path / "train_state.pt"
    if data is None:
        torch.save({"x": _Evil()}, p)
    else:
        p.write_bytes(data)
    called = []
    monkeypatch.setattr(os, "system", lambda *a: called.append(a))
    with pytest.raises(BadInputError) as e:
        aio.load_torch_state(p, "training state")
    _one_line_naming(e, p, "training state")
    assert not called


def test_torch_state_round_trip(tmp_path):
    p = tmp_path / "s.pt"
    aio.save_torch_atomic(p, {"step": 3, "t": torch.arange(3)})
    s = aio.load_torch_state(p)
    assert s["step"] == 3 and torch.equal(s["t"], torch.arange(3))


# ------------------------------------------------------------------------------ arrays
def _npy(tmp_path, name, arr, **kw):
    p = tmp_path / name
    np.save(p, arr, **kw)
    return tmp_path / name


@pytest.mark.parametrize("case, words", [
    ("zero_frames", ["0 frame(s), need at least 1"]),
    ("zero_d", ["0-d array"]),
    ("object", ["pickled Python objects"]),
    ("nan", ["1 frame(s) contain NaN or inf (first: frame 2)"]),
    ("inf_strided", ["frame 4"]),
    ("wrong_width", ["4 vertices per frame (shape (3, 12)), expected 5"]),
    ("ints", ["expected floating-point vertices, got dtype int64"]),
    ("npz_two", ["arrays ['a', 'b']"]),
    ("truncated", ["not a readable"]),
    ("text", ["no numpy header"]),
    ("empty", ["empty vertex file"]),
])
def test_load_vertices_rejects(tmp_path, case, words):
    good = np.zeros((6, 15), np.float32)
    p = tmp_path / "v.npy"
    if case == "zero_frames":
        np.save(p, good[:0])
    elif case == "zero_d":
        np.save(p, np.float32(1))
    elif case == "object":
        np.save(p, np.array([good, 1], dtype=object), allow_pickle=True)
    elif case == "nan":
        good[2, 7] = np.nan
        np.save(p, good)
    elif case == "inf_strided":
        good[4, 0] = np.inf
        np.save(p, good)
    elif case == "wrong_width":
        np.save(p, np.zeros((3, 12), np.float32))
    elif case == "ints":
        np.save(p, np.zeros((3, 15), np.int64))
    elif case == "npz_two":
        with open(p, "wb") as f:  # an archive under a .npy name
            np.savez(f, a=good, b=good)
    elif case == "truncated":
        np.save(p, good)
        p.write_bytes(p.read_bytes()[:150])
    elif case == "text":
        p.write_text("1 2 3\n")
    elif case == "empty":
        p.write_bytes(b"")
    with pytest.raises(BadInputError) as e:
        aio.load_vertices(p, 5, stride=2 if case == "inf_strided" else 1)
    _one_line_naming(e, p, *words)


def test_load_vertices_accepts_both_layouts_and_npz(tmp_path):
    v = np.random.default_rng(0).normal(size=(4, 5, 3)).astype(np.float32)
    a = aio.load_vertices(_npy(tmp_path, "a.npy", v.reshape(4, 15)), 5)
    b = aio.load_vertices(_npy(tmp_path, "b.npy", v.astype(np.float64)))
    p = tmp_path / "c.npy"
    with open(p, "wb") as f:  # npz saved as .npy: one clear array, so read as such
        np.savez(f, vertices=v)
    c = aio.load_vertices(p, 5, stride=2)
    assert a.shape == b.shape == (4, 5, 3) and a.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(a, v)
    np.testing.assert_array_equal(c, v[::2])


def test_faces_and_indices(tmp_path):
    f = aio.load_faces(_npy(tmp_path, "f.npy", np.array([[0, 1, 2], [2, 3, 4]], np.int32)), 5)
    assert f.dtype == np.int64 and f.shape == (2, 3)
    with pytest.raises(BadInputError) as e:
        aio.load_faces(_npy(tmp_path, "neg.npy", np.array([[0, 1, -2]])), 5)
    _one_line_naming(e, tmp_path / "neg.npy", "negative index -2")
    with pytest.raises(BadInputError) as e:
        aio.load_faces(_npy(tmp_path, "big.npy", np.array([[0, 1, 5]])), 5)
    _one_line_naming(e, tmp_path / "big.npy", "index 5", "5 vertices")
    with pytest.raises(BadInputError, match="expected faces"):
        aio.load_faces(_npy(tmp_path, "flat.npy", np.arange(6)), 5)
    with pytest.raises(BadInputError, match="must be integers"):
        aio.load_faces(_npy(tmp_path, "float.npy", np.zeros((2, 3))), 5)
    lips = tmp_path / "lips.txt"
    lips.write_text("1, 2,3\n4 0\n")
    assert aio.load_indices(lips, 5).tolist() == [1, 2, 3, 4, 0]
    for text, words in (("1, 2, x7", ["'x7' is not an integer"]), ("1, 9", ["index 9"]), ("", ["empty"]),
                        ("1.5", ["'1.5'"])):
        lips.write_text(text)
        with pytest.raises(BadInputError) as e:
            aio.load_indices(lips, 5, "'lips' vertex region")
        _one_line_naming(e, lips, *words)


def test_restricted_unpickler_stays(tmp_path, monkeypatch):
    p = tmp_path / "templates.pkl"
    p.write_bytes(pickle.dumps({"A": _Evil()}))
    called = []
    monkeypatch.setattr(os, "system", lambda *a: called.append(a))
    with pytest.raises(BadInputError, match="forbidden global"):
        aio.safe_load_pickle(p)
    assert not called


# ------------------------------------------------------------------------------ audio
def test_audio_errors(tmp_path):
    import soundfile as sf

    p = tmp_path / "a.wav"
    sf.write(p, np.zeros(0, np.float32), 16000)
    with pytest.raises(BadInputError) as e:
        aio.load_audio(p)
    _one_line_naming(e, p, "empty")
    x = np.zeros(16000, np.float32)
    x[5] = np.nan
    sf.write(p, x, 16000, subtype="FLOAT")
    with pytest.raises(BadInputError, match="NaN"):
        aio.audio_duration(p)
    p.write_bytes(b"RIFF" + bytes(40))
    with pytest.raises(BadInputError, match="not a readable audio file"):
        aio.load_audio(p)
    aio.save_wav(p, np.zeros(8000))
    assert aio.audio_duration(p) == 0.5


# ------------------------------------------------------------------------------ outputs
def test_load_npz(tmp_path):
    p = tmp_path / "a.npz"
    np.savez(p, faces=np.zeros((2, 3), np.int64), lips=np.arange(3))
    out = aio.load_npz(p, ("faces", "lips"), "assets")
    assert out["faces"].shape == (2, 3) and out["lips"].tolist() == [0, 1, 2]
    with pytest.raises(BadInputError) as e:
        aio.load_npz(p, ("faces", "albedo"), "assets")
    _one_line_naming(e, p, "assets lacks the array(s) albedo (has faces, lips)")
    np.save(tmp_path / "b.npy", np.zeros(3))
    with pytest.raises(BadInputError) as e:
        aio.load_npz(tmp_path / "b.npy", ("faces",), "assets")
    _one_line_naming(e, tmp_path / "b.npy", "not a .npz assets")
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(BadInputError) as e:
        aio.load_npz(p, ("faces",), "assets")
    _one_line_naming(e, p, "corrupt assets")
    with pytest.raises(MissingFileError):
        aio.load_npz(tmp_path / "none.npz", ("faces",))


def test_output_names_empty_and_too_long(tmp_path):
    with pytest.raises(BadInputError, match="^-o: empty path"):
        aio.check_output_file("", "-o")
    with pytest.raises(BadInputError, match="^--out: empty path"):
        aio.check_output_dir("", "--out")
    long = tmp_path / ("é" * 101 + ".npy")  # 202 bytes
    with pytest.raises(BadInputError, match="file name of 206 bytes; at most 200"):
        aio.check_output_file(long, "-o")
    with pytest.raises(BadInputError, match="file name of 202 bytes"):
        aio.check_output_dir(tmp_path / ("é" * 101), "-o")
    assert aio.check_output_file(tmp_path / ("x" * 200)) == tmp_path / ("x" * 200)
    assert list(tmp_path.iterdir()) == []


def test_check_output_file(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(BadInputError, match="is a directory"):
        aio.check_output_file(tmp_path / "d", "-o")
    with pytest.raises(BadInputError, match="is a directory"):
        aio.check_output_file(f"{tmp_path}/new/", "-o")
    with pytest.raises(BadInputError, match=r"f is a file, not a directory"):
        aio.check_output_file(tmp_path / "f" / "out.mp4", "-o")
    with pytest.raises(BadInputError, match="already exists"):
        aio.check_output_file(tmp_path / "f", "-o", overwrite=False)
    with pytest.raises(BadInputError, match="cannot write in /sys"):
        aio.check_output_file("/sys/avguide-test.mp4", "-o")
    assert aio.check_output_file(tmp_path / "a" / "b" / "c.mp4") == tmp_path / "a" / "b" / "c.mp4"
    with pytest.raises(BadInputError, match="exists and is not a directory"):
        aio.check_output_dir(tmp_path / "f")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f"]  # nothing created, no probe left


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_check_output_read_only_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(BadInputError, match="Permission denied"):
            aio.check_output_file(ro / "x.json")
    finally:
        ro.chmod(0o755)


def test_full_disk_during_write_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "report.json"
    aio.write_json_atomic(p, {"old": 1})

    import avguide.io.output as output

    class FullDisk(io.BytesIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(output, "open", lambda *a, **k: FullDisk(), raising=False)
    with pytest.raises(BadInputError) as e:
        aio.write_json_atomic(p, {"new": 2})
    _one_line_naming(e, p, "No space left on device")
    monkeypatch.undo()
    assert json.loads(p.read_text()) == {"old": 1}
    assert [x.name for x in tmp_path.iterdir()] == ["report.json"]  # no temporary file left


def test_atomic_path_other_errors_pass_unchanged(tmp_path):
    with pytest.raises(KeyError):
        with aio.atomic_path(tmp_path / "x.bin"):
            raise KeyError("bug")
    with pytest.raises(OSError) as e:  # not the user's disk: a bug keeps its own exception
        with aio.atomic_path(tmp_path / "x.bin"):
            raise OSError(errno.EBADF, "bad file descriptor")
    assert not isinstance(e.value, BadInputError)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ video
def _ffmpeg_children() -> list[int]:
    """Live (not zombie) processes whose parent is this process and whose name is ffmpeg."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            name = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid() and "ffmpeg" in name and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_video_writer_writes_and_never_orphans_ffmpeg(tmp_path):
    import imageio_ffmpeg

    p = tmp_path / "v.mp4"
    frames = np.zeros((5, 16, 32, 3), np.uint8)
    with aio.video_writer(p, 32, 16, 25.0, 10) as video:
        video.write(frames)
        video.write(frames + 200)
    assert imageio_ffmpeg.count_frames_and_secs(str(p))[0] == 10
    with pytest.raises(KeyError):
        with aio.video_writer(tmp_path / "w.mp4", 32, 16, 25.0, 10) as video:
            video.write(frames)
            raise KeyError("a bug while rendering")
    assert not (tmp_path / "w.mp4").exists() and _ffmpeg_children() == []
    with pytest.raises(RuntimeError, match="3 frames written"):
        with aio.video_writer(tmp_path / "w.mp4", 32, 16, 25.0, 10) as video:
            video.write(frames[:3])
    assert sorted(x.name for x in tmp_path.iterdir()) == ["v.mp4"] and _ffmpeg_children() == []
