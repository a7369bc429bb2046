"""Live Link Face CSV and JSON files of ARKit weights: layout, read-back, input checks."""

import csv
import json

import numpy as np
import pytest

import avguide
from avguide.assets.arkit import ARKIT_NAMES
from avguide.errors import BadInputError, MissingFileError
from avguide.export import read_arkit_csv, solve_arkit, write_arkit_csv, write_arkit_json

# The header of a Live Link Face export as public importers of the app's CSVs spell it
# (e.g. nmfisher/blender_livelinkface): note JawRight/JawLeft and MouthRight/MouthLeft.
LIVE_LINK_HEADER = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,"
    "EyeLookUpLeft,EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,"
    "EyeLookOutRight,EyeLookUpRight,EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,"
    "JawOpen,MouthClose,MouthFunnel,MouthPucker,MouthRight,MouthLeft,MouthSmileLeft,"
    "MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,MouthDimpleRight,"
    "MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,"
    "MouthShrugUpper,MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,"
    "MouthUpperUpLeft,MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,"
    "BrowOuterUpRight,CheekPuff,CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,"
    "TongueOut,HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,"
    "RightEyePitch,RightEyeRoll")


@pytest.fixture
def weights():
    return np.random.default_rng(0).uniform(0, 1, size=(70, 52)).astype(np.float32)


def test_csv_layout_is_live_link_face(tmp_path, weights):
    path = write_arkit_csv(tmp_path / "take.csv", weights, 30)
    lines = path.read_text().splitlines()
    assert lines[0] == LIVE_LINK_HEADER
    assert len(lines) == 71
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["Timecode"] for r in (rows[0], rows[29], rows[30], rows[61])] == [
        "00:00:00:00.000", "00:00:00:29.000", "00:00:01:00.000", "00:00:02:01.000"]
    for t, row in enumerate(rows):
        assert row["BlendShapeCount"] == "61" and len(row) == 63
        for k, name in enumerate(ARKIT_NAMES):          # each weight under its own name
            assert float(row[name[0].upper() + name[1:]]) == pytest.approx(float(weights[t, k]), abs=5e-9)
        for rot in ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "RightEyeRoll"):
            assert float(row[rot]) == 0.0


def test_timecode_runs_past_hours(tmp_path):
    w = np.zeros((1, 52), np.float32)
    path = write_arkit_csv(tmp_path / "t.csv", np.repeat(w, 2, 0), 1 / 3725.0)
    assert path.read_text().splitlines()[2].startswith("01:02:05:00.000,61,")


@pytest.mark.parametrize("fps", [30, 25, 60, 24.0])
def test_csv_round_trip_integer_rates(tmp_path, weights, fps):
    got, rate = read_arkit_csv(write_arkit_csv(tmp_path / "a.csv", weights, fps))
    assert rate == fps and got.dtype == np.float32 and got.shape == weights.shape
    np.testing.assert_allclose(got, weights, rtol=0, atol=1e-8)


def test_csv_round_trip_fractional_rate(tmp_path, weights):
    path = write_arkit_csv(tmp_path / "ntsc.csv", weights, 30000 / 1001)
    assert path.read_text().splitlines()[2].startswith("00:00:00:01.001,")
    got, rate = read_arkit_csv(path)
    assert rate == pytest.approx(30000 / 1001, rel=1e-4)
    np.testing.assert_allclose(got, weights, atol=1e-8)
    assert read_arkit_csv(path, fps=29.97)[1] == 29.97


def test_reads_other_column_orders_and_cases(tmp_path):
    rng = np.random.default_rng(1)
    w = rng.uniform(0, 1, size=(3, 52))
    order = rng.permutation(52)
    header = ["Timecode", "BlendShapeCount"] + [ARKIT_NAMES[k] for k in order] + ["HeadYaw"]
    rows = [[f"10:00:00:{t:02d}.000", "53"] + [f"{w[t, k]:.6f}" for k in order] + ["0.3"]
            for t in range(3)]
    path = tmp_path / "camel.csv"
    path.write_text("\n".join(",".join(r) for r in [header] + rows) + "\n")
    got, rate = read_arkit_csv(path, fps=60)
    np.testing.assert_allclose(got, w, atol=1e-6)
    assert rate == 60.0


@pytest.mark.parametrize("content, words", [
    ("", ["empty"]),
    ("Timecode,BlendShapeCount,EyeBlinkLeft\n00:00:00:00.000,1,0.5\n", ["lacks", "eyeLookDownLeft"]),
    (LIVE_LINK_HEADER + "\n", ["no frames"]),
    (LIVE_LINK_HEADER + "\n00:00:00:00.000,61,0.5\n", ["line 2", "fields"]),
    (LIVE_LINK_HEADER + "\n" + "00:00:00:00.000,61," + ",".join(["x"] * 61) + "\n", ["not a number"]),
    (LIVE_LINK_HEADER + "\n" + "\n".join(f"00:00:00:{t:02d}.000,61," + ",".join(["0"] * 61)
                                        for t in range(5)) + "\n", ["second boundary", "fps="]),
    (LIVE_LINK_HEADER + "\n" + "\n".join(f"0:0:{t}.5,61," + ",".join(["0"] * 61)
                                        for t in range(5)) + "\n", ["line 2", "timecode"]),
])
def test_bad_csv_is_one_clear_error(tmp_path, content, words):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(BadInputError) as e:
        read_arkit_csv(path)
    assert str(path) in str(e.value)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_missing_csv(tmp_path):
    with pytest.raises(MissingFileError, match="nope.csv"):
        read_arkit_csv(tmp_path / "nope.csv")


def test_json_holds_weights_names_and_fit(tmp_path, head, subject):
    rng = np.random.default_rng(2)
    verts = subject[None] + np.einsum("tk,kvc->tvc", rng.uniform(0, 1, (8, 52)), head.blendshapes)
    fit = solve_arkit(verts, subject, head.blendshapes)
    path = write_arkit_json(tmp_path / "out" / "take.json", fit.weights, 30, fit)
    data = json.loads(path.read_text())
    assert set(data) == {"avguide_version", "fps", "names", "reconstruction", "weights"}
    assert data["fps"] == 30.0 and data["names"] == list(ARKIT_NAMES)
    assert data["avguide_version"] == avguide.__version__
    assert data["reconstruction"] == fit.reconstruction()
    np.testing.assert_allclose(np.array(data["weights"]), fit.weights, rtol=0, atol=5e-7)
    assert json.loads(write_arkit_json(tmp_path / "n.json", fit.weights, 25).read_text())[
        "reconstruction"] is None


@pytest.mark.parametrize("writer", [write_arkit_csv, write_arkit_json])
@pytest.mark.parametrize("weights, fps, words", [
    (np.zeros((3, 51)), 30, ["weights", "(T, 52)"]),
    (np.zeros((0, 52)), 30, ["T = 0"]),
    (np.full((3, 52), np.nan), 30, ["weights", "NaN"]),
    (np.zeros((3, 52)), 0, ["fps"]),
    (np.zeros((3, 52)), float("nan"), ["fps"]),
    (np.zeros((3, 52)), -25, ["fps"]),
    (np.zeros((3, 52)), "fast", ["fps"]),
])
def test_bad_weights_or_fps(tmp_path, writer, weights, fps, words):
    with pytest.raises(ValueError) as e:
        writer(tmp_path / "x", weights, fps)
    assert not isinstance(e.value, BadInputError)  # the caller's arrays: a programming error
    for w in words:
        assert w in str(e.value)
    assert not (tmp_path / "x").exists()
