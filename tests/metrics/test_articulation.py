"""Articulation metrics on hand-made mouths whose answers are known by construction, then on
real recordings of the synthetic benchmark (GT against itself, a static face, a mean face)."""

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from avguide.metrics import articulation as art

SYNTH = Path(__file__).resolve().parents[2] / "data" / "synth"

# A toy mouth (metres): rows of 5 vertices at x = -20..20 mm; upper lip inner edge y = +1 mm,
# outer y = +6 mm; lower lip inner -1 mm, outer -6 mm; corners at x = +-30 mm; one nose vertex.
XS = [-0.02, -0.01, 0.0, 0.01, 0.02]
UPPER = np.arange(0, 10)   # 0..4 inner, 5..9 outer
LOWER = np.arange(10, 20)  # 10..14 inner, 15..19 outer
LIPS = np.arange(0, 22)    # + corners 20, 21
NOSE = 22


def _template():
    rows = [(x, y, 0.0) for y in (0.001, 0.006, -0.001, -0.006) for x in XS]
    return np.array(rows + [(-0.03, 0.0, 0.0), (0.03, 0.0, 0.0), (0.0, 0.03, 0.01)])  # (23, 3)


def _animate(template, opening, stretch=None):
    """(T, 23, 3): upper lip raised by opening/2, lower lowered by opening/2 (so the mouth
    opening is the template's + ``opening``), corners pulled out by ``stretch``."""
    opening = np.asarray(opening, np.float64)
    v = np.repeat(template[None], opening.shape[0], axis=0)
    v[:, UPPER, 1] += 0.5 * opening[:, None]
    v[:, LOWER, 1] -= 0.5 * opening[:, None]
    if stretch is not None:
        v[:, 20, 0] -= stretch
        v[:, 21, 0] += stretch
    return v


def test_opening_vertices_are_the_inner_midline_ones_for_any_placement_of_the_head():
    tmpl = _template()
    up, lo = art.opening_vertices(tmpl, LIPS, UPPER, LOWER, n_inner=1)
    assert up.tolist() == [2] and lo.tolist() == [12]      # inner edge, x = 0
    up4, lo4 = art.opening_vertices(tmpl, LIPS, UPPER, LOWER)  # band +-6 mm: inner and outer
    assert sorted(up4.tolist()) == [2, 7] and sorted(lo4.tolist()) == [12, 17]
    # another subject: moved, wider mouth; same vertices, same opening
    other = tmpl * np.array([1.3, 1.0, 1.0]) + np.array([0.3, 1.7, -0.2])
    assert art.opening_vertices(other, LIPS, UPPER, LOWER, n_inner=1) == (up, lo)
    seq = _animate(tmpl, [0.0, 0.004, 0.01])
    np.testing.assert_allclose(art.mouth_opening(seq, up, lo), [0.002, 0.006, 0.012])
    np.testing.assert_allclose(art.mouth_opening(seq + np.array([5.0, -3.0, 1.0]), up, lo),
                               [0.002, 0.006, 0.012], atol=1e-12)
    with pytest.raises(ValueError, match="lower_idx"):
        art.opening_vertices(tmpl, LIPS, UPPER, [15], n_inner=1)  # x = -20 mm: off the mid-line


def test_half_motion_has_ratio_half_and_correlation_one():
    tmpl = _template()
    t = np.arange(90) / 30.0
    a = 0.006 * (1 - np.cos(2 * np.pi * 1.3 * t))          # 0..12 mm
    s = 0.003 * np.sin(2 * np.pi * 0.7 * t)
    gt = _animate(tmpl, a, s)
    pred = tmpl + 0.5 * (gt - tmpl)                          # the GT's motion scaled by 0.5
    assert art.lip_motion_ratio(pred, gt, LIPS) == pytest.approx(0.5, rel=1e-12)
    assert art.lip_motion_ratio(gt, gt, LIPS) == pytest.approx(1.0)
    phones = [("_", 0.0, 0.5), ("æ", 0.5, 1.0), ("m", 1.0, 1.2), ("ɑː", 1.2, 2.0), ("_", 2.0, 3.0)]
    row = art.articulation_metrics(pred, gt, phones, 30.0, LIPS, UPPER, LOWER, template=tmpl)
    assert row["lip_motion_ratio"] == pytest.approx(0.5, rel=1e-12)
    assert row["opening_corr"] == pytest.approx(1.0, abs=1e-12)
    # opening = template's 7 mm (mean of inner and outer rows) + a; pred: 7 mm + a / 2
    k = np.array([f for f in range(90) if 0.5 <= f / 30 <= 1.0 or 1.2 <= f / 30 <= 2.0])
    expected = (0.007 + 0.5 * a[k]).sum() / (0.007 + a[k]).sum()
    assert row["open_vowel_aperture"] == pytest.approx(expected, rel=1e-9)
    assert row["open_vowel_frames"] == k.size


def test_time_shifted_sinusoid_correlation_is_the_cosine_of_the_phase_shift():
    fps, period, shift = 30.0, 20, 2                         # 3 whole periods of 20 frames
    k = np.arange(60)
    gt = np.sin(2 * np.pi * k / period)
    pred = 3.0 + 0.2 * np.sin(2 * np.pi * (k - shift) / period)  # offset and gain do not matter
    assert art.opening_correlation(pred, gt) == pytest.approx(math.cos(2 * np.pi * shift / period), abs=1e-12)
    assert art.opening_correlation(-gt, gt) == pytest.approx(-1.0)
    assert art.opening_correlation(np.full(60, 0.004), gt) == 0.0     # never moves
    assert math.isnan(art.opening_correlation(gt, np.zeros(60)))      # GT never moves
    # the same through meshes
    tmpl = _template()
    row = art.articulation_metrics(_animate(tmpl, 0.005 * (1 + pred)), _animate(tmpl, 0.005 * (1 + gt)),
                                   [], fps, LIPS, UPPER, LOWER)
    assert row["opening_corr"] == pytest.approx(math.cos(2 * np.pi * shift / period), abs=1e-9)


PHONES = [("_", 0.0, 0.2), ("m", 0.2, 0.3), ("æ", 0.3, 0.6), ("p", 0.6, 0.7), ("ɪ", 0.7, 0.9),
          ("b", 0.9, 1.0), ("_", 1.0, 1.4)]


def _gt_opening(fps=30.0, n=42):
    """Closed (0) during /m p b/ cores, 12 mm during /æ/, 3 mm during /ɪ/, 2 mm in silence
    (above the closure threshold)."""
    t = np.arange(n) / fps
    o = np.full(n, 0.002)
    o[(t >= 0.3) & (t < 0.6)] = 0.012
    o[(t >= 0.7) & (t < 0.9)] = 0.003
    for start, end in ((0.2, 0.3), (0.6, 0.7), (0.9, 1.0)):
        o[(t >= start + 0.02) & (t <= end - 0.02)] = 0.0
    return o


def test_closure_rate_counts_segments_whose_lips_close():
    gt = _gt_opening()
    thr = art.closure_threshold(gt)
    assert thr == pytest.approx(0.0012)                      # 10 % of the 12 mm range
    assert art.bilabial_closures(gt, PHONES, 30.0, thr) == (3, 3)
    assert art.bilabial_closures(gt + 0.004, PHONES, 30.0, thr) == (0, 3)  # never closes
    late = np.r_[gt[:1], gt[:-1]]                            # 33 ms late: still in the segments
    assert art.bilabial_closures(late, PHONES, 30.0, thr, tol_s=0.0) == (3, 3)
    later = np.r_[gt[:3], gt[:-3]]                           # 100 ms late: only within the 40 ms tol
    assert art.bilabial_closures(later, PHONES, 30.0, thr) == (3, 3)
    assert art.bilabial_closures(later, PHONES, 30.0, thr, tol_s=0.0) == (0, 3)
    much_later = np.r_[gt[:5], gt[:-5]]                      # 167 ms late: closes in the vowels
    assert art.bilabial_closures(much_later, PHONES, 30.0, thr) == (0, 3)
    # /b/'s window (from 0.86 s) begins after the last frame (0.8 s): skipped, not a failure
    assert art.bilabial_closures(gt[:25], PHONES, 30.0, thr) == (2, 2)


def test_sequence_metrics_on_a_mouth_that_never_closes():
    tmpl = _template()
    o = _gt_opening()
    gt = _animate(tmpl, o)
    pred = _animate(tmpl, o + 0.004)
    row = art.articulation_metrics(pred, gt, PHONES, 30.0, LIPS, UPPER, LOWER, template=tmpl)
    assert row["bilabial_closure"] == 0.0 and row["bilabial_closure_gt"] == 1.0
    assert row["bilabial_segments"] == 3
    assert row["lip_motion_ratio"] == pytest.approx(1.0)     # same motion, shifted up
    assert row["opening_corr"] == pytest.approx(1.0)
    k = [f for f in range(42) if 0.3 <= f / 30 <= 0.6]       # the /æ/ frames
    assert row["open_vowel_aperture"] == pytest.approx(
        sum(0.007 + o[f] + 0.004 for f in k) / sum(0.007 + o[f] for f in k))


def test_without_truth_the_rest_face_is_the_closed_reference():
    tmpl = _template()                                       # at rest: the (inner+outer) opening is 7 mm
    o = _gt_opening()                                        # above rest: 0 at /m p b/, 12 mm at /æ/
    row = art.articulation_without_truth(_animate(tmpl, o), PHONES, 30.0, LIPS, UPPER, LOWER, tmpl)
    assert row["rest_opening"] == pytest.approx(0.007)
    assert row["widest_opening"] == pytest.approx(0.012) and row["closure_threshold"] == pytest.approx(0.0012)
    assert (row["bilabial_closed"], row["bilabial_segments"], row["bilabial_closure"]) == (3, 3, 1.0)
    assert [s["phone"] for s in row["segments"]] == ["m", "p", "b"]
    assert [s["min_opening"] for s in row["segments"]] == pytest.approx([0.0, 0.0, 0.0], abs=1e-12)
    k = [f for f in range(42) if 0.3 <= f / 30 <= 0.6]       # the /æ/ frames
    assert row["open_vowel_opening"] == pytest.approx(np.mean(o[k])) and row["open_vowel_frames"] == len(k)
    # lips that stop 1.5 mm short of rest at /p/ only (above 10 % of 12 mm): that segment fails
    short = o.copy()
    t = np.arange(42) / 30.0
    short[(t >= 0.55) & (t <= 0.75)] = np.maximum(short[(t >= 0.55) & (t <= 0.75)], 0.0015)
    row = art.articulation_without_truth(_animate(tmpl, short), PHONES, 30.0, LIPS, UPPER, LOWER, tmpl)
    assert [s["closed"] for s in row["segments"]] == [True, False, True]
    assert row["segments"][1]["min_opening"] == pytest.approx(0.0015)
    # a face that never moves closes everything and opens nothing (read the two together)
    still = art.articulation_without_truth(_animate(tmpl, np.zeros(42)), PHONES, 30.0, LIPS, UPPER, LOWER, tmpl)
    assert still["bilabial_closure"] == 1.0 and still["open_vowel_opening"] == 0.0 and still["widest_opening"] == 0.0
    # no bilabial and no open vowel: NaN rates, not zero
    none = art.articulation_without_truth(_animate(tmpl, o), [("ɪ", 0.0, 1.0)], 30.0, LIPS, UPPER, LOWER, tmpl)
    assert math.isnan(none["bilabial_closure"]) and math.isnan(none["open_vowel_opening"])
    with pytest.raises(ValueError, match="template"):
        art.articulation_without_truth(_animate(tmpl, o), PHONES, 30.0, LIPS, UPPER, LOWER, tmpl[:5])


def test_open_vowel_frames_short_segments_and_past_the_end():
    phones = [("aɪ", 0.101, 0.110), ("ɑ", 0.5, 0.6), ("æ", 5.0, 5.2), ("t", 0.2, 0.3)]
    k = art.open_vowel_frames(30, phones, 30.0)
    assert k.tolist() == [3, 15, 16, 17, 18]                 # nearest frame; 5 s is past the end


def test_aggregation_weights_and_keys():
    rows = [
        {"frames": 100, "lip_var_pred": 1.0, "lip_var_gt": 4.0, "opening_corr": 0.5,
         "bilabial_segments": 3, "bilabial_closed": 1, "bilabial_closed_gt": 3,
         "open_vowel_frames": 10, "open_vowel_pred_sum": 2.0, "open_vowel_gt_sum": 10.0},
        {"frames": 300, "lip_var_pred": 4.0, "lip_var_gt": 4.0, "opening_corr": 1.0,
         "bilabial_segments": 1, "bilabial_closed": 1, "bilabial_closed_gt": 0,
         "open_vowel_frames": 30, "open_vowel_pred_sum": 28.0, "open_vowel_gt_sum": 30.0},
        {"frames": 50, "lip_var_pred": 0.0, "lip_var_gt": 0.0, "opening_corr": float("nan"),
         "bilabial_segments": 0, "bilabial_closed": 0, "bilabial_closed_gt": 0,
         "open_vowel_frames": 0, "open_vowel_pred_sum": 0.0, "open_vowel_gt_sum": 0.0},
    ]
    out = art.aggregate_articulation(rows)
    assert tuple(out)[:5] == art.SUMMARY_KEYS
    assert out["lip_motion_ratio"] == pytest.approx(math.sqrt((100 * 1 + 300 * 4) / (400 * 4)))
    assert out["opening_corr"] == pytest.approx((100 * 0.5 + 300 * 1.0) / 400)  # NaN row skipped
    assert out["bilabial_closure"] == pytest.approx(2 / 4)
    assert out["bilabial_closure_gt"] == pytest.approx(3 / 4)
    assert out["open_vowel_aperture"] == pytest.approx(30 / 40)
    assert (out["sequences"], out["frames"], out["bilabial_segments"]) == (3, 450, 4)
    assert math.isnan(art.aggregate_articulation(rows[2:])["bilabial_closure"])
    with pytest.raises(ValueError, match="at least one"):
        art.aggregate_articulation([])
    with pytest.raises(ValueError, match=r"rows\[0\]: missing"):
        art.aggregate_articulation([{"frames": 3}])


def test_bad_inputs_are_named():
    tmpl = _template()
    gt = _animate(tmpl, np.zeros(10))
    with pytest.raises(ValueError, match="same shape.*truncate_to_common_length"):
        art.articulation_metrics(gt[:9], gt, [], 30.0, LIPS, UPPER, LOWER)
    with pytest.raises(ValueError, match="same shape"):
        art.lip_motion_ratio(gt[:9], gt, LIPS)
    with pytest.raises(ValueError, match="pred: expected vertices"):
        art.articulation_metrics(gt.reshape(10, -1), gt, [], 30.0, LIPS, UPPER, LOWER)
    with pytest.raises(ValueError, match=r"phones\[1\].*viseme"):
        art.articulation_metrics(gt, gt, [("_", 0, 1), ("Q", 1, 2)], 30.0, LIPS, UPPER, LOWER)
    with pytest.raises(ValueError, match="fps"):
        art.articulation_metrics(gt, gt, PHONES, 0.0, LIPS, UPPER, LOWER)
    with pytest.raises(ValueError, match="lip_idx"):
        art.articulation_metrics(gt, gt, [], 30.0, [99], UPPER, LOWER)
    with pytest.raises(ValueError, match="template"):
        art.articulation_metrics(gt, gt, [], 30.0, LIPS, UPPER, LOWER, template=tmpl[:5])
    bad = gt.copy()
    bad[3, 0, 0] = np.nan
    with pytest.raises(ValueError, match="gt: contains NaN"):
        art.articulation_metrics(gt, bad, [], 30.0, LIPS, UPPER, LOWER)


@pytest.fixture(scope="module")
def recordings():
    if not (SYNTH / "manifest.json").is_file():
        pytest.skip("data/synth not generated")
    regions = {r: np.array([int(i) for i in (SYNTH / "regions" / f"{r}.txt").read_text().split(",")])
               for r in ("lips", "upper_lip", "lower_lip")}
    templates = pickle.loads((SYNTH / "templates.pkl").read_bytes())
    out = []
    for name in ("Synth01_sentence01", "Synth05_sentence03", "Synth11_sentence30"):
        v = np.load(SYNTH / "vertices_npy" / f"{name}.npy")
        align = json.loads((SYNTH / "alignments" / f"{name}.json").read_text())
        out.append((v.reshape(v.shape[0], -1, 3), align, templates[name.split("_")[0]]))
    return regions, out


def test_real_recordings_against_themselves_a_static_face_and_a_mean_face(recordings):
    regions, recs = recordings
    idx = (regions["lips"], regions["upper_lip"], regions["lower_lip"])
    same, static, mean_face = [], [], []
    for gt, align, tmpl in recs:
        fps, phones = align["fps"], align["phones"]
        same.append(art.articulation_metrics(gt, gt, phones, fps, *idx, template=tmpl))
        rest = np.repeat(tmpl[None], gt.shape[0], axis=0)
        static.append(art.articulation_metrics(rest, gt, phones, fps, *idx, template=tmpl))
        mean = np.repeat(gt.mean(axis=0, keepdims=True), gt.shape[0], axis=0)
        mean_face.append(art.articulation_metrics(mean, gt, phones, fps, *idx, template=tmpl))
        # the opening is a physical lip gap: closed lips press (<= 0.5 mm), open vowels open wide
        up, lo = art.opening_vertices(tmpl, *idx)
        o = art.mouth_opening(gt, up, lo)
        assert o.min() < 0.0005 and o.max() > 0.010
        assert abs(art.mouth_opening(tmpl[None], up, lo)[0]) < 0.001   # lips touch at rest
    agg = art.aggregate_articulation(same)
    assert agg["lip_motion_ratio"] == pytest.approx(1.0)
    assert agg["opening_corr"] == pytest.approx(1.0)
    assert agg["open_vowel_aperture"] == pytest.approx(1.0)
    assert agg["bilabial_segments"] >= 8 and agg["open_vowel_frames"] >= 10
    # the benchmark closes the lips at every /p b m/: the ceiling is 1
    assert agg["bilabial_closure"] == agg["bilabial_closure_gt"] == 1.0
    agg = art.aggregate_articulation(static)
    assert agg["lip_motion_ratio"] == 0.0 and agg["opening_corr"] == 0.0
    assert abs(agg["open_vowel_aperture"]) < 0.1 and agg["bilabial_closure_gt"] == 1.0
    # a face at rest has its lips (nearly) together: it passes every bilabial of a sequence
    # when its rest gap is within the threshold (10 % of the GT range above the GT's tightest
    # closure), none otherwise; it is the motion ratio and the aperture that expose it
    for row, (_, _, tmpl) in zip(static, recs):
        up, lo = art.opening_vertices(tmpl, *idx)
        rest_gap = art.mouth_opening(tmpl[None], up, lo)[0]
        assert row["bilabial_closed"] == (row["bilabial_segments"] if rest_gap <= row["closure_threshold"] else 0)
    # without a ground truth (rest face as the closed reference) the truth still closes them all
    for gt, align, tmpl in recs:
        row = art.articulation_without_truth(gt, align["phones"], align["fps"], *idx, template=tmpl)
        assert row["bilabial_closure"] == 1.0 and row["open_vowel_opening"] > 0.005
    agg = art.aggregate_articulation(mean_face)
    # the most over-smoothed prediction: half-open all the time, never closes
    assert agg["lip_motion_ratio"] == 0.0 and agg["bilabial_closure"] == 0.0
    assert 0.2 < agg["open_vowel_aperture"] < 0.9
