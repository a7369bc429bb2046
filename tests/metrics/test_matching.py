"""Prediction / ground-truth name matching and safe loading of vertex files."""

import numpy as np
import pytest

from avguide.errors import BadInputError, MissingFileError
from avguide.metrics import matching
from avguide.metrics.matching import Match

VOCA = "FaceTalk_170809_00138_TA_sentence21"
VOCA_OTHER = "FaceTalk_170725_00137_TA"
GT = [VOCA, "F2_e37", "F2_e3", "M3_e40"]


@pytest.mark.parametrize("stem,expected", [
    ("F2_e37", ("F2_e37", None)),
    ("F2_e3", ("F2_e3", None)),                      # a prefix of F2_e37, still exact
    ("F2_e37_condition_M3", ("F2_e37", "M3")),
    ("F2_e3_condition_M3", ("F2_e3", "M3")),
    ("F2_e37_pred", ("F2_e37", None)),
    ("F2_e37_condition_M3_pred", ("F2_e37", "M3")),
    (VOCA, (VOCA, None)),
    (f"{VOCA}_condition_{VOCA_OTHER}", (VOCA, VOCA_OTHER)),
    (f"{VOCA}_pred", (VOCA, None)),
    ("F2_e38", None),                                # no such ground truth
    ("F2_e37_seed0", None),                          # unknown suffix
    ("F2_e37_condition_", None),                     # empty condition
    ("F2_e370", None),                               # not F2_e37 + "_"
])
def test_parse_prediction_name(stem, expected):
    assert matching.parse_prediction_name(stem, GT) == expected


def test_subject_of():
    assert matching.subject_of(VOCA) == "FaceTalk_170809_00138_TA"
    assert matching.subject_of("F2_e37") == "F2"
    with pytest.raises(BadInputError, match="subject"):
        matching.subject_of("F2e37")


def _touch(folder, *names):
    for n in names:
        np.save(folder / n, np.zeros((2, 3), np.float32)) if n.endswith(".npy") else \
            np.savez(folder / n, vertices=np.zeros((2, 3), np.float32))


def test_find_and_match_all_styles(tmp_path):
    _touch(tmp_path, "F2_e37_condition_M3.npy", "F2_e37_condition_F3.npz", "F2_e3.npy",
           f"{VOCA}_condition_{VOCA_OTHER}.npy", "M3_e40_pred.npz")
    (tmp_path / "notes.txt").write_text("ignored")
    files = matching.find_motion_files(tmp_path)
    assert len(files) == 5
    matches = matching.match_predictions(files, GT, expected=GT)
    assert [(m.gt_name, m.condition) for m in matches] == [
        ("F2_e3", None), ("F2_e37", "F3"), ("F2_e37", "M3"), (VOCA, VOCA_OTHER), ("M3_e40", None)]
    assert matches[1] == Match(tmp_path / "F2_e37_condition_F3.npz", "F2_e37", "F3")
    assert matches[3].subject == "FaceTalk_170809_00138_TA"


def test_unmatched_duplicate_and_missing_are_listed_together(tmp_path):
    _touch(tmp_path, "F2_e37.npy", "F2_e37_pred.npz", "F9_e01_condition_M3.npy",
           "F2_e37_take2.npy")
    files = matching.find_motion_files(tmp_path)
    with pytest.raises(BadInputError) as err:
        matching.match_predictions(files, GT, expected=["F2_e37", "M3_e40", "M4_e40"])
    msg = str(err.value)
    assert "F9_e01_condition_M3.npy: no ground truth named F9_e01" in msg
    assert "F2_e37_take2.npy: unrecognised suffix after F2_e37" in msg
    assert "F2_e37.npy and F2_e37_pred.npz both map to F2_e37" in msg
    assert "have no ground-truth file: M4_e40" in msg
    assert "have no prediction: M3_e40" in msg


def test_find_motion_files_errors(tmp_path):
    with pytest.raises(MissingFileError):
        matching.find_motion_files(tmp_path / "absent")
    with pytest.raises(BadInputError, match="no .npy or .npz"):
        matching.find_motion_files(tmp_path)
    _touch(tmp_path, "F2_e37.npy", "F2_e37.npz")
    with pytest.raises(BadInputError, match="both .npy and .npz"):
        matching.find_motion_files(tmp_path)


def test_load_vertex_file_layouts(tmp_path):
    arr = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    np.save(tmp_path / "flat.npy", arr.reshape(2, 12))
    np.savez(tmp_path / "named.npz", vertices=arr, other=np.zeros(3))
    np.savez(tmp_path / "single.npz", arr.astype(np.float64))
    np.savez(tmp_path / "two.npz", a=arr, b=arr)
    for name in ("flat.npy", "named.npz", "single.npz"):
        out = matching.load_vertex_file(tmp_path / name, n_vertices=4)
        assert out.dtype == np.float32 and out.shape == (2, 4, 3)
        np.testing.assert_array_equal(out, arr)
    with pytest.raises(BadInputError, match="expected one array or one named vertices"):
        matching.load_vertex_file(tmp_path / "two.npz")
    with pytest.raises(BadInputError, match="4 vertices per frame .*expected 5"):
        matching.load_vertex_file(tmp_path / "flat.npy", n_vertices=5)
    with pytest.raises(MissingFileError):
        matching.load_vertex_file(tmp_path / "absent.npy")


def test_load_vertex_file_rejects_nan_pickles_and_garbage(tmp_path):
    arr = np.zeros((5, 12), np.float32)
    arr[3, 7] = np.nan
    np.save(tmp_path / "F2_e37_condition_M3.npy", arr)
    with pytest.raises(BadInputError, match=r"F2_e37_condition_M3\.npy: 1 frame\(s\) contain "
                                            r"NaN or inf \(first: frame 3\)"):
        matching.load_vertex_file(tmp_path / "F2_e37_condition_M3.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(BadInputError, match="obj.npy"):
        matching.load_vertex_file(tmp_path / "obj.npy")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(BadInputError, match="junk.npz"):
        matching.load_vertex_file(tmp_path / "junk.npz")
    np.save(tmp_path / "ints.npy", np.zeros((2, 6), np.int32))
    with pytest.raises(BadInputError, match="floating-point"):
        matching.load_vertex_file(tmp_path / "ints.npy")
