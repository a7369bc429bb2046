"""Evaluation orchestration: length reconciliation, condition averaging, reading, reports."""

import json
import pickle

import numpy as np
import pytest
import soundfile

from avguide.errors import AvguideError, BadInputError
from avguide.metrics.evaluate import (EvaluateConfig, SequencePair, evaluate, evaluate_dataset,
                                      truncate_to_common_length)
from avguide.metrics.report import format_markdown, write_report

V = 4
LIPS = [0, 2]
UPPER = [1, 3]


def _template(x0: float) -> np.ndarray:
    """(V, 3) template whose vertex 0 has x = x0 (a marker the fake reader can see)."""
    t = np.zeros((V, 3), np.float32)
    t[:, 1] = np.arange(V)
    t[0, 0] = x0
    return t


TEMPLATES = {"F2": _template(0.0), "M3": _template(10.0)}


def _pair(name, condition, offset, t_pred, t_gt=None):
    """Ground truth = the subject's template, still; prediction = it shifted by ``offset`` in x."""
    subject = name.split("_")[0]
    gt = np.repeat(TEMPLATES[subject][None], t_gt or t_pred, axis=0)  # (T, V, 3)
    pred = np.repeat(TEMPLATES[subject][None], t_pred, axis=0)
    pred[..., 0] += offset
    return SequencePair(name, condition, pred, gt, f"pred/{name}_{condition}.npy", f"gt/{name}.npy")


def test_truncation_counts_and_limits():
    pair = _pair("F2_e37", None, 1.0, t_pred=22, t_gt=20)
    pred, gt, dropped = truncate_to_common_length(pair)
    assert pred.shape[0] == gt.shape[0] == 20 and dropped == 2
    pred, gt, dropped = truncate_to_common_length(_pair("F2_e37", None, 1.0, 18, 20))
    assert pred.shape[0] == 18 and dropped == 2
    with pytest.raises(BadInputError, match=r"pred/F2_e37_None\.npy has 26 frames but "
                                            r"gt/F2_e37\.npy has 20"):
        truncate_to_common_length(_pair("F2_e37", None, 1.0, 26, 20))  # 6 > 5 frames
    with pytest.raises(BadInputError, match="3 frames exceeds"):
        truncate_to_common_length(_pair("F2_e37", None, 1.0, 23, 20))  # 3 > 10 % of 20
    report = evaluate([_pair("F2_e37", None, 1.0, 22, 20)], LIPS, UPPER, TEMPLATES)
    row = report["rows"][0]
    assert (row["frames"], row["frames_pred"], row["frames_gt"], row["truncated_frames"]) == \
        (20, 22, 20, 2)
    assert report["summary"]["truncated_frames"] == 2


def test_conditions_are_averaged_per_ground_truth():
    # LVE of a constant x offset d is d^2, MVE is |d|
    pairs = [_pair("F2_e37", "M3", 1.0, 2), _pair("F2_e37", "M4", 3.0, 2),
             _pair("M3_e38", None, 2.0, 4)]
    report = evaluate(iter(pairs), LIPS, UPPER, TEMPLATES)
    assert [r["lve"] for r in report["rows"]] == pytest.approx([1.0, 9.0, 4.0])
    seqs = report["sequences"]
    assert [s["name"] for s in seqs] == ["F2_e37", "M3_e38"]
    assert seqs[0]["conditions"] == ["M3", "M4"] and seqs[0]["lve"] == pytest.approx(5.0)
    s = report["summary"]
    assert s["lve"]["mean_over_sequences"] == pytest.approx(4.5)
    assert s["lve"]["std"] == pytest.approx(0.5)
    # frames: F2_e37 weighs its 2 frames at the condition mean 5, M3_e38 4 frames at 4
    assert s["lve"]["mean_over_frames"] == pytest.approx((2 * 5 + 4 * 4) / 6)
    assert s["mve"]["mean_over_frames"] == pytest.approx(2.0)
    assert (s["count_sequences"], s["count_predictions"], s["frames"],
            s["max_conditions_per_sequence"]) == (2, 3, 8, 2)
    # still ground truth and a constant offset: no motion either side
    assert s["fdd"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert report["ceiling"] is None and "cer" not in s


def test_fdd_sign_and_abs_aggregation():
    def moving(name, amp_gt, amp_pred):
        # vertex 1 (upper face) moves in x by 0, a, 0, a -> sq norms 0 a^2 0 a^2 -> std a^2/2
        tpl = TEMPLATES[name.split("_")[0]]
        wave = np.array([0, 1, 0, 1], np.float32)[:, None]
        gt = np.repeat(tpl[None], 4, axis=0)
        pred = gt.copy()
        gt[:, 1, 0] += amp_gt * wave[:, 0]
        pred[:, 1, 0] += amp_pred * wave[:, 0]
        return SequencePair(name, None, pred, gt, name + ".pred", name + ".gt")

    # mean over the 2 upper vertices (vertex 3 never moves): FDD = (a_gt^2 - a_pred^2) / 4
    report = evaluate([moving("F2_e37", 2.0, 0.0), moving("M3_e38", 0.0, 4.0)], LIPS, UPPER,
                      TEMPLATES)
    assert [s["fdd"] for s in report["sequences"]] == pytest.approx([1.0, -4.0])
    f = report["summary"]["fdd"]
    assert f["mean"] == pytest.approx(-1.5) and f["abs_of_mean"] == pytest.approx(1.5)
    assert f["mean_abs"] == pytest.approx(2.5) and f["std"] == pytest.approx(2.5)


def _caller_bug(match):
    """Arrays passed wrong to evaluate() are the caller's bug: a plain ValueError, which the CLI
    shows with its traceback, never the user-facing BadInputError (files are checked on load)."""
    return pytest.raises(ValueError, match=match)


def _assert_not_user_error(excinfo):
    assert not isinstance(excinfo.value, AvguideError), type(excinfo.value)


def test_nan_prediction_names_file_and_sequence():
    pair = _pair("F2_e37", "M3", 1.0, 5)
    pair.pred[2, 1, 0] = np.nan
    with _caller_bug(r"pred/F2_e37_M3\.npy \(F2_e37\): 1 frame\(s\) contain "
                                            r"NaN or inf \(first: frame 2\)") as e:
        evaluate([pair], LIPS, UPPER, TEMPLATES)
    _assert_not_user_error(e)


def test_bad_pairs():
    with _caller_bug("no template for subject 'F9'") as e:
        evaluate([SequencePair("F9_e01", None, np.zeros((3, V, 3)), np.zeros((3, V, 3)), "p", "g")],
                 LIPS, UPPER, TEMPLATES)
    _assert_not_user_error(e)
    with _caller_bug("p has 5 vertices per frame but g has 4") as e:
        evaluate([SequencePair("F2_e01", None, np.zeros((3, 5, 3)), np.zeros((3, V, 3)), "p", "g")],
                 LIPS, UPPER, TEMPLATES)
    _assert_not_user_error(e)
    with pytest.raises(BadInputError, match="nothing to evaluate"):
        evaluate([], LIPS, UPPER, TEMPLATES)


HYPS = {0: "the cat sat", 1: "the bat sat", 3: "a cat", 10: "hello word again",
        12: "Hello, world again"}
TRANSCRIPTS = {"F2_e37": "The cat sat.", "M3_e38": "Hello world, again!"}


def _fake_reader(calls):
    def read(seqs, fps):
        calls.append((len(seqs), fps))
        return [HYPS[int(round(float(v[0, 0, 0])))] for v in seqs]
    return read


def test_reading_metrics_rows_corpus_and_ceiling():
    calls = []
    pairs = [_pair("F2_e37", "M3", 1.0, 3), _pair("F2_e37", "M4", 3.0, 3),
             _pair("M3_e38", None, 2.0, 3)]
    report = evaluate(pairs, LIPS, UPPER, TEMPLATES, TRANSCRIPTS, _fake_reader(calls), fps=25.0,
                      cfg=EvaluateConfig(reader_batch=2), to_visemes=lambda t: t)
    # 3 predictions + 2 ground truths read, in batches of at most 2, at the given fps
    assert sum(n for n, _ in calls) == 5 and max(n for n, _ in calls) <= 2
    assert {fps for _, fps in calls} == {25.0}
    rows = report["rows"]
    assert rows[0]["hypothesis"] == "the bat sat"
    # "the cat sat" (11 chars, 3 words) -> "the bat sat": 1 char, 1 word; -> "a cat": 7 chars
    # (sub t->a, delete "he" and " sat"), 2 words (the->a, delete sat)
    assert [r["cer_edits"] for r in rows] == [1, 7, 0]
    assert [r["wer_edits"] for r in rows] == [1, 2, 0]
    assert rows[0]["cer"] == pytest.approx(1 / 11)
    s = report["summary"]
    # per sequence: F2_e37 mean edits 4 of 11 chars, 1.5 of 3 words; M3_e38 0 of 17 / 0 of 3
    assert s["cer"]["corpus"] == pytest.approx(4 / 28)
    assert s["cer"]["mean_over_sequences"] == pytest.approx((4 / 11 + 0) / 2)
    assert s["wer"]["corpus"] == pytest.approx(1.5 / 6)
    assert s["ver"]["corpus"] == pytest.approx(s["cer"]["corpus"])  # identity viseme map
    # ceiling: ground truths read as "the cat sat" (exact) and "hello word again" (1 char, 1 word)
    c = report["ceiling"]
    assert [e["name"] for e in c["rows"]] == ["F2_e37", "M3_e38"]
    assert c["cer"]["corpus"] == pytest.approx(1 / 28)
    assert c["wer"]["corpus"] == pytest.approx(1 / 6)


def test_reading_argument_errors():
    pairs = [_pair("F2_e37", "M3", 1.0, 3)]
    with _caller_bug("both a reader and transcripts") as e:
        evaluate(pairs, LIPS, UPPER, TEMPLATES, reader=_fake_reader([]), fps=25)
    _assert_not_user_error(e)
    with _caller_bug("fps") as e:
        evaluate(pairs, LIPS, UPPER, TEMPLATES, TRANSCRIPTS, _fake_reader([]))
    _assert_not_user_error(e)
    with pytest.raises(BadInputError, match="F2_e37: no transcript"):
        evaluate(pairs, LIPS, UPPER, TEMPLATES, {"M3_e38": "x"}, _fake_reader([]), fps=25)
    with pytest.raises(RuntimeError, match="must return 2 strings") as e:  # the reader's bug
        evaluate(pairs, LIPS, UPPER, TEMPLATES, TRANSCRIPTS, lambda s, f: ["only one"], fps=25,
                 cfg=EvaluateConfig(compute_ver=False))
    _assert_not_user_error(e)
    with pytest.raises(BadInputError, match="reader_batch"):
        evaluate(pairs, LIPS, UPPER, TEMPLATES, cfg=EvaluateConfig(reader_batch=0))
    assert EvaluateConfig(split="tset").check() == [
        "split: unknown split 'tset'; allowed: train, val, test, test_a, test_b, all or null"]


def test_write_report_json_and_markdown(tmp_path):
    pairs = [_pair("F2_e37", "M3", 1.0, 2), _pair("F2_e37", "M4", 3.0, 2),
             _pair("M3_e38", None, 2.0, 4)]
    cfg = EvaluateConfig()
    report = evaluate(pairs, LIPS, UPPER, TEMPLATES, TRANSCRIPTS, _fake_reader([]), fps=25.0,
                      cfg=cfg, to_visemes=lambda t: t)
    out = tmp_path / "out"
    write_report(out / "report.json", report, cfg, out / "report.md", {"pred_dir": "preds"})
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]
    data = json.loads((out / "report.json").read_text())
    assert data["avguide_version"] == "0.1.0"
    assert data["config"]["max_frame_diff"] == 5 and data["config"]["pred_dir"] == "preds"
    assert data["summary"]["lve"]["mean_over_frames"] == pytest.approx(26 / 6)
    assert len(data["rows"]) == 3 and "lve" in data["units"]
    md = (out / "report.md").read_text()
    assert md == format_markdown(report, cfg)
    # LVE 26/6 shown x1e-5 -> 433333.3333; MVE 2 shown x1e-3 -> 2000.0000; CER 4/28 -> 14.29 %
    assert "| predictions (2 sequences, 3 files) | 433333.3333 | 2000.0000 | 0.0000 | 14.29 |" in md
    assert "| ground truth (reader ceiling) | - | - | - | 3.57 |" in md


def _biwi_dataset(root, with_fdd=True):
    """A 3-recording BIWI-layout dataset with 4-vertex meshes at 25 fps."""
    (root / "wav").mkdir(parents=True)
    (root / "vertices_npy").mkdir()
    (root / "regions").mkdir()
    (root / "sentencestext").mkdir()
    rng = np.random.default_rng(0)
    tpl = rng.normal(size=(V, 3)).astype(np.float32)
    with open(root / "templates.pkl", "wb") as f:
        pickle.dump({"F2": tpl}, f)
    (root / "regions" / "lve.txt").write_text("0, 2")
    if with_fdd:
        (root / "regions" / "fdd.txt").write_text("1, 3")
    lines = [f"sentence {chr(ord('a') + n % 26) * 3}" for n in range(1, 41)]  # 37 -> "sentence lll"
    (root / "sentencestext" / "F2.txt").write_text("\n".join(lines) + "\n")
    gts = {}
    for name in ("F2_e01", "F2_e37", "F2_e38"):
        soundfile.write(root / "wav" / f"{name}.wav", np.zeros(16000, np.float32), 16000)
        gts[name] = tpl + 0.01 * rng.normal(size=(20, V, 3)).astype(np.float32)
        np.save(root / "vertices_npy" / f"{name}.npy", gts[name].reshape(20, V * 3))
    return gts


def test_evaluate_dataset_biwi_layout(tmp_path):
    gts = _biwi_dataset(tmp_path / "data")
    preds = tmp_path / "preds"
    preds.mkdir()

    def save(stem, gt, lip_offset, t=20, npz=False):
        p = gt[:t].copy()
        p[:, [0, 2], 0] += lip_offset  # lips moved by lip_offset: LVE = lip_offset^2
        p[:, 1, 2] += 0.5              # a non-lip vertex far off: must not enter LVE
        if npz:
            np.savez(preds / f"{stem}.npz", vertices=p)
        else:
            np.save(preds / f"{stem}.npy", p.reshape(t, V * 3))

    save("F2_e37_condition_M3", gts["F2_e37"], 0.1)
    save("F2_e37_condition_F3", gts["F2_e37"], 0.3, npz=True)
    save("F2_e38_condition_M3", gts["F2_e38"], 0.2, t=19)
    save("F2_e01_condition_M3", gts["F2_e01"], 0.0)

    # the predictions span train (F2_e01) and test_a: without split= that is refused
    with pytest.raises(BadInputError, match=r"span several splits: test_a \(3\), train \(1\); pass split="):
        evaluate_dataset(preds, tmp_path / "data")
    report = evaluate_dataset(preds, tmp_path / "data", EvaluateConfig(split="all"))
    assert report["dataset"]["layout"] == "biwi" and report["dataset"]["fps"] == 25.0
    assert len(report["rows"]) == 4 and report["ignored_predictions"] == []
    assert report["coverage"]["predictions_by_split"] == {"test_a": 3, "train": 1}
    by = {(r["name"], r["condition"]): r for r in report["rows"]}
    assert by["F2_e37", "F3"]["lve"] == pytest.approx(0.09, rel=1e-5)
    assert by["F2_e38", "M3"]["truncated_frames"] == 1
    assert by["F2_e01", "M3"]["lve"] == 0.0

    # split test_a (here F2_e37, F2_e38): the train prediction is ignored, not evaluated
    report = evaluate_dataset(preds, tmp_path / "data", EvaluateConfig(split="test_a"),
                              reader=lambda seqs, fps: ["sentence"] * len(seqs),
                              to_visemes=lambda t: t)
    assert [s["name"] for s in report["sequences"]] == ["F2_e37", "F2_e38"]
    assert report["ignored_predictions"] == [str(preds / "F2_e01_condition_M3.npy")]
    assert report["missing_predictions"] == [] and report["dataset"]["split_source"] == "argument"
    assert "1 file(s): F2_e01_condition_M3.npy" in format_markdown(report, EvaluateConfig())
    assert report["sequences"][0]["lve"] == pytest.approx((0.01 + 0.09) / 2, rel=1e-5)
    # "sentence lll" / "sentence mmm" -> "sentence": 4 deletions of 12 characters each
    assert report["rows"][0]["reference"] == "sentence lll"
    assert report["summary"]["cer"]["corpus"] == pytest.approx(8 / 24)
    # every sequence of the split must be predicted
    (preds / "F2_e38_condition_M3.npy").unlink()
    with pytest.raises(BadInputError, match=r"1 of 2 sequence\(s\) of split test_a have no prediction: F2_e38"):
        evaluate_dataset(preds, tmp_path / "data", EvaluateConfig(split="test_a"))
    # inferred from the predictions (all test_a once the train one is gone): still complete or refused
    (preds / "F2_e01_condition_M3.npy").unlink()
    with pytest.raises(BadInputError, match="split test_a have no prediction: F2_e38"):
        evaluate_dataset(preds, tmp_path / "data")
    report = evaluate_dataset(preds, tmp_path / "data", EvaluateConfig(allow_missing=True))
    assert (report["dataset"]["split"], report["dataset"]["split_source"]) == ("test_a", "inferred from the predictions")
    assert report["missing_predictions"] == ["F2_e38"] and len(report["sequences"]) == 1
    assert "Scored split test_a (inferred from the predictions): 1 of 2 sequences predicted. MISSING (not scored): " \
        "1: F2_e38." in format_markdown(report, EvaluateConfig())


def test_evaluate_dataset_needs_regions(tmp_path):
    _biwi_dataset(tmp_path / "data", with_fdd=False)
    (tmp_path / "preds").mkdir()
    np.save(tmp_path / "preds" / "F2_e37.npy", np.zeros((20, V * 3), np.float32))
    with pytest.raises(BadInputError, match="no 'upper_face' vertex region"):
        evaluate_dataset(tmp_path / "preds", tmp_path / "data")


def test_evaluate_dataset_reports_articulation_on_the_synthetic_layout(tmp_path):
    """The synthetic layout has timed phones: evaluate adds the articulation metrics. Ground truth
    scored against itself moves exactly as much (ratio 1, correlation 1); the static template does
    not move at all (ratio 0)."""
    from avguide.cli import main
    from avguide.data.layouts import open_dataset
    from avguide.metrics.evaluate import EvaluateConfig, evaluate_dataset

    data = tmp_path / "synth"
    assert main(["synth", "-o", str(data), "subjects=3", "sentences=2", "workers=1"]) == 0
    index = open_dataset(data)
    same, still = tmp_path / "same", tmp_path / "still"
    same.mkdir()
    still.mkdir()
    for ref in index.split("test"):
        gt = np.load(ref.vertices)
        np.save(same / f"{ref.name}.npy", gt)
        np.save(still / f"{ref.name}.npy", np.tile(index.templates[ref.subject].reshape(1, -1), (len(gt), 1)))
    art = evaluate_dataset(same, data, EvaluateConfig(split="test"))["summary"]["articulation"]
    assert art["lip_motion_ratio"] == pytest.approx(1.0) and art["opening_corr"] == pytest.approx(1.0)
    assert art["bilabial_closure"] == art["bilabial_closure_gt"]
    assert art["open_vowel_aperture"] == pytest.approx(1.0) or np.isnan(art["open_vowel_aperture"])
    art = evaluate_dataset(still, data, EvaluateConfig(split="test"))["summary"]["articulation"]
    assert art["lip_motion_ratio"] == pytest.approx(0.0, abs=1e-6)
