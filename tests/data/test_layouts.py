import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

from avguide.data.batching import RecordingDataset, collate, make_loader
from avguide.data.layouts import open_dataset
from avguide.data.samples import load_sample, reconcile_lengths
from avguide.errors import BadInputError, MissingFileError



def test_vocaset_layout_splits_stride_and_resampling(vocaset_dir):
    idx = open_dataset(vocaset_dir)
    assert idx.layout == "vocaset" and idx.fps == 30 and idx.stride == 2
    by_name = {s.name: s for s in idx.samples}
    assert by_name["FaceTalk_170728_03272_TA_sentence01"].split == "train"
    assert by_name["FaceTalk_170809_00138_TA_sentence01"].split is None      # test subj, sent 1-20
    assert by_name["FaceTalk_170809_00138_TA_sentence21"].split == "test"
    assert by_name["FaceTalk_170809_00138_TA_sentence21"].text == "sentence number 21"
    ref = by_name["FaceTalk_170809_00138_TA_sentence21"]
    s = load_sample(idx, ref)
    raw = np.load(ref.vertices)
    assert s.vertices.shape[1:] == (10, 3)
    # 60 fps -> every 2nd frame, first frame kept as is
    np.testing.assert_array_equal(s.vertices[1].reshape(-1), raw[2])
    # 22.05 kHz audio resampled to 16 kHz and trimmed by the length rule
    n, n_samples = reconcile_lengths(raw[::2].shape[0], round(sf.info(ref.wav).frames * 16000 / 22050), 30)
    assert s.vertices.shape[0] == n and abs(s.audio.shape[0] - n_samples) <= 1
    assert s.subject_index == -1 and idx.subject_index("FaceTalk_170728_03272_TA") == 0


def test_biwi_layout_regions_and_splits(biwi_dir):
    idx = open_dataset(biwi_dir)
    assert idx.layout == "biwi" and idx.fps == 25
    np.testing.assert_array_equal(idx.regions["lips"], [1, 2, 3, 4])
    np.testing.assert_array_equal(idx.regions["upper_face"], [7, 8, 9])
    splits = {s.name: s.split for s in idx.samples}
    assert splits == {"F1_e01": None, "F1_e33": None, "F1_e37": "test_b",
                      "F2_e01": "train", "F2_e33": "val", "F2_e37": "test_a"}


def test_length_rule():
    assert reconcile_lengths(30, 16000, 30) == (30, 16000)
    assert reconcile_lengths(31, 16000, 30) == (30, 16000)         # one extra motion frame dropped
    assert reconcile_lengths(30, 15990, 30) == (29, 15467)         # audio short by < 1 frame
    with pytest.raises(BadInputError, match="motion is 2.00 s"):
        reconcile_lengths(60, 16000, 30, "x")


def test_batch_padding_and_mask(biwi_dir, write_recording):
    idx = open_dataset(biwi_dir)
    write_recording(biwi_dir, "F2_e02", 12, 1.2, 25, seed=5)
    idx = open_dataset(biwi_dir)
    ds = RecordingDataset(idx, idx.split("train"), cache=True)
    batch = next(iter(make_loader(ds, 2, shuffle=False, seed=0)))
    assert batch.vertices.shape == (2, 30, 12, 3) and batch.lengths.tolist() == [20, 30]
    assert batch.mask.sum().item() == 50
    assert torch.all(batch.vertices[0, 20:] == 0) and batch.audio_lengths.tolist() == [12800, 19200]
    single = collate([ds[0]])
    torch.testing.assert_close(single.vertices[0], batch.vertices[0, :20])


# ----------------------------------------------------------------------------- bad input

def test_missing_directory_and_parts(tmp_path):
    with pytest.raises(MissingFileError, match="dataset directory not found"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "wav").mkdir()
    with pytest.raises(MissingFileError, match="vertices_npy"):
        open_dataset(tmp_path)


def test_missing_partner_skipped_with_count_or_strict_error(biwi_dir, caplog):
    (biwi_dir / "wav" / "F2_e01.wav").unlink()
    idx = open_dataset(biwi_dir)
    assert len(idx.skipped) == 1 and "F2_e01.npy" in idx.skipped[0][0]
    assert "skipped 1 file" in caplog.text
    with pytest.raises(BadInputError, match="F2_e01.npy: no partner in wav/"):
        open_dataset(biwi_dir, strict=True)


def test_missing_templates(biwi_dir):
    (biwi_dir / "templates.pkl").unlink()
    with pytest.raises(MissingFileError, match="templates.pkl"):
        open_dataset(biwi_dir)


def test_template_vertex_mismatch(biwi_dir):
    (biwi_dir / "templates.pkl").write_bytes(pickle.dumps({"F2": np.zeros((12, 3)), "F1": np.zeros((11, 3))}))
    with pytest.raises(BadInputError, match="'F1' has 11 vertices"):
        open_dataset(biwi_dir)


def test_vertices_wrong_width(biwi_dir):
    np.save(biwi_dir / "vertices_npy" / "F2_e01.npy", np.zeros((20, 33), np.float32))
    idx = open_dataset(biwi_dir)
    ref = next(s for s in idx.samples if s.name == "F2_e01")
    with pytest.raises(BadInputError, match=r"F2_e01.npy: 11 vertices per frame \(shape \(20, 33\)\), expected 12"):
        load_sample(idx, ref)


def test_vertices_nan(biwi_dir):
    v = np.zeros((20, 36), np.float32)
    v[7, 3] = np.nan
    np.save(biwi_dir / "vertices_npy" / "F2_e01.npy", v)
    idx = open_dataset(biwi_dir)
    ref = next(s for s in idx.samples if s.name == "F2_e01")
    with pytest.raises(BadInputError, match=r"F2_e01.npy: 1 frame\(s\) contain NaN or inf \(first: frame 7\)"):
        load_sample(idx, ref)


def test_vertices_corrupt(biwi_dir):
    (biwi_dir / "vertices_npy" / "F2_e01.npy").write_bytes(b"garbage")
    idx = open_dataset(biwi_dir)
    ref = next(s for s in idx.samples if s.name == "F2_e01")
    with pytest.raises(BadInputError, match="F2_e01.npy: not a .npy or .npz vertex file"):
        load_sample(idx, ref)


def test_missing_transcript_line(vocaset_dir):
    p = vocaset_dir / "sentencestext" / "FaceTalk_170809_00138_TA.txt"
    p.write_text("only one line\n")
    idx = open_dataset(vocaset_dir)
    ref = next(s for s in idx.samples if s.name == "FaceTalk_170809_00138_TA_sentence21")
    assert load_sample(idx, ref).text is None
    with pytest.raises(BadInputError, match="FaceTalk_170809_00138_TA.txt: no transcript line 21"):
        load_sample(idx, ref, need_text=True)


def test_regions_checked_at_open_against_the_templates(biwi_dir):
    """A lip region out of range used to surface inside a loss an epoch later, unnamed."""
    (biwi_dir / "regions" / "lve.txt").write_text("1, 2, 12")  # V = 12: indices 0..11
    with pytest.raises(BadInputError, match=r"regions/lve.txt: 'lve' vertex region holds index 12, but the "
                                            r"mesh has 12 vertices"):
        open_dataset(biwi_dir)
    (biwi_dir / "regions" / "lve.txt").write_text("1, 2, -1")
    with pytest.raises(BadInputError, match="lve.txt: 'lve' vertex region holds the negative index -1"):
        open_dataset(biwi_dir)


@pytest.mark.parametrize("value, words", [("0 0 0", "is str '0 0 0'"), (np.array(["a", "b", "c"]), "dtype <U1"),
                                          (None, "is NoneType"), ([[0, 0, 0]] * 11 + [["x", 0, 0]], "is list")])
def test_templates_must_be_numeric_arrays(biwi_dir, value, words):
    (biwi_dir / "templates.pkl").write_bytes(pickle.dumps({"F2": np.zeros((12, 3)), "F1": value}))
    with pytest.raises(BadInputError) as e:
        open_dataset(biwi_dir)
    assert "templates.pkl: template of 'F1' " in str(e.value) and words in str(e.value)


@pytest.mark.parametrize("splits, words", [(["F2_e01"], "'splits' must be an object"),
                                           ({"tset": []}, "unknown split 'tset'"),
                                           ({"train": "F2_e01"}, "splits.train must be a list")])
def test_manifest_is_checked(biwi_dir, splits, words):
    import json

    (biwi_dir / "manifest.json").write_text(json.dumps({"fps": 25, "splits": splits, "train_subjects": ["F2"]}))
    with pytest.raises(BadInputError, match=words) as e:
        open_dataset(biwi_dir)
    assert "manifest.json" in str(e.value)
    (biwi_dir / "manifest.json").write_text(json.dumps({"fps": float("nan"), "splits": {}, "train_subjects": []}))
    with pytest.raises(BadInputError, match="'fps' must be a number of frames per second"):
        open_dataset(biwi_dir)


def test_flame_masks_checked(vocaset_dir):
    (vocaset_dir / "FLAME_masks.pkl").write_bytes(pickle.dumps({"lips": np.array([1, 2, 30])}))
    with pytest.raises(BadInputError, match=r"FLAME_masks.pkl: region 'lips' holds index 30; indices must lie in \[0, 10\)"):
        open_dataset(vocaset_dir)
    (vocaset_dir / "FLAME_masks.pkl").write_bytes(pickle.dumps({"lips": np.array([1, 2]), "forehead": [3],
                                                                "eye_region": np.array([4, 3])}))
    assert open_dataset(vocaset_dir).regions["upper_face"].tolist() == [3, 4]
