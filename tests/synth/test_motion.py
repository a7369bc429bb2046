"""Speech motion: range, smoothness, closure/contact/opening measured on the rigged head,
rest in silence, frame-rate consistency, determinism, style effects."""

import numpy as np
import pytest

from avguide.assets.arkit import ARKIT_INDEX
from avguide.assets.head import load_head
from avguide.speech.espeak import Phone, sample_voice, speak
from avguide.speech.visemes import phoneme_to_viseme
from avguide.synth.motion import SpeakingStyle, sample_style, speech_motion
from avguide.synth.text import generate_sentences

MOUTH = slice(ARKIT_INDEX["jawForward"], ARKIT_INDEX["browDownLeft"])  # jaw + mouth columns


@pytest.fixture(scope="module")
def head():
    h = load_head()
    v0 = h.vertices.astype(np.float64)
    bs = h.blendshapes.astype(np.float64)
    ul, ll = h.regions["upper_lip"], h.regions["lower_lip"]
    teeth = h.regions["teeth"]
    # upper teeth: the teeth that the jaw does not move; incisal edge near the midline
    fixed = np.linalg.norm(bs[ARKIT_INDEX["jawOpen"]][teeth], axis=1) < 1e-9
    upper = teeth[fixed & (np.abs(v0[teeth, 0]) < 0.004)]
    return {"v0": v0, "bs": bs, "ul": ul[np.abs(v0[ul, 0]) < 0.003],
            "ll": ll[np.abs(v0[ll, 0]) < 0.003], "edge": v0[upper, 1].min(),
            "lips": h.regions["lips"]}


def _mesh(head, w):
    return head["v0"][None] + np.einsum("tk,kvc->tvc", w.astype(np.float64), head["bs"])  # (T,V,3)


def _gap(head, v):
    """Lip gap (m) at the midline: lowest upper-lip vertex minus highest lower-lip vertex."""
    return v[:, head["ul"], 1].min(axis=1) - v[:, head["ll"], 1].max(axis=1)  # (T,)


@pytest.fixture(scope="module")
def corpus():
    """12 generated sentences, each spoken by a different subject, motion at 30 fps."""
    rng = np.random.default_rng(4)
    items = []
    for i, text in enumerate(generate_sentences(12, seed=11)):
        utt = speak(text, sample_voice(rng, i))
        style = sample_style(rng)
        n = int(utt.duration * 30)
        w = speech_motion(utt.phones, n, 30.0, style, np.random.default_rng(i))
        items.append((utt, style, w))
    return items


def _centre_frames(utt, fps, n, code):
    for p in utt.phones:
        if p.ipa != "_" and phoneme_to_viseme(p.ipa) == code:
            k = int(round(0.5 * (p.start + p.end) * fps))
            if k < n:
                yield p, k


def test_shape_range_dtype(corpus):
    for utt, _, w in corpus:
        assert w.dtype == np.float32 and w.shape == (int(utt.duration * 30), 52)
        assert w.min() >= 0.0 and w.max() <= 1.0
        # mouthClose never exceeds jawOpen (mouthClose alone deforms the lips badly)
        assert np.all(w[:, ARKIT_INDEX["mouthClose"]] <= w[:, ARKIT_INDEX["jawOpen"]] + 1e-6)


def test_lips_closed_at_every_bilabial(corpus, head):
    count = 0
    for utt, _, w in corpus:
        gap = _gap(head, _mesh(head, w))
        for p, k in _centre_frames(utt, 30, w.shape[0], "p"):
            assert gap[k] < 0.0003, (p, gap[k])  # rest gap 0.24 mm; open vowels > 5 mm
            count += 1
    assert count >= 20


def test_lower_lip_to_upper_teeth_at_labiodentals(corpus, head):
    count = 0
    for utt, _, w in corpus:
        v = _mesh(head, w)
        top = v[:, head["ll"], 1].max(axis=1) - head["edge"]  # lower lip above incisal edge
        for p, k in _centre_frames(utt, 30, w.shape[0], "f"):
            assert top[k] > 0.0015, (p, top[k])  # rest: +0.6 mm; rolled up to the teeth: ~3 mm
            assert _gap(head, v[k:k + 1])[0] < 0.0003
            count += 1
    assert count >= 8


def test_open_vowels_open_and_rounded_vowels_round(head):
    phones = [Phone("_", 0.0, 0.5), Phone("p", 0.5, 0.58), Phone("ɑː", 0.58, 0.8, 1),
              Phone("p", 0.8, 0.88), Phone("uː", 0.88, 1.1, 1), Phone("_", 1.1, 1.6)]
    w = speech_motion(phones, 48, 30.0, SpeakingStyle(), np.random.default_rng(0))
    v = _mesh(head, w)
    gap = _gap(head, v)
    k_a, k_u = round(0.69 * 30), round(0.99 * 30)
    assert gap[k_a] > 0.012  # "aa" opens the mouth > 12 mm
    assert 0.002 < gap[k_u] < gap[k_a] / 2  # "oo": a small opening
    lips = head["lips"]
    assert np.ptp(v[k_u, lips, 0]) < np.ptp(v[0, lips, 0]) - 0.004  # corners in by > 4 mm
    assert w[k_u, ARKIT_INDEX["mouthPucker"]] > 0.5


def test_rest_in_silence(head):
    phones = [Phone("_", 0.0, 1.0), Phone("m", 1.0, 1.1), Phone("æ", 1.1, 1.3, 1),
              Phone("p", 1.3, 1.4), Phone("_", 1.4, 2.4)]
    style = SpeakingStyle(blink_rate=0.0, brow_rate=0.0, gaze_amplitude=0.0)
    w = speech_motion(phones, 60, 25.0, style, np.random.default_rng(0))
    quiet = [k for k in range(60) if k / 25 < 0.7 or k / 25 > 1.7]
    assert np.abs(w[quiet]).max() < 1e-3
    assert np.abs(_gap(head, _mesh(head, w[quiet])) - _gap(head, head["v0"][None])).max() < 1e-4
    assert w[round(1.2 * 25), ARKIT_INDEX["jawOpen"]] > 0.3


def test_smooth_no_popping(corpus):
    """Bounded frame-to-frame acceleration that shrinks ~quadratically with the frame step
    (a jump would not shrink, a kink only linearly)."""
    for i, (utt, style, w30) in enumerate(corpus[:6]):
        d2_30 = np.abs(np.diff(w30[:, MOUTH], 2, axis=0)).max()
        w120 = speech_motion(utt.phones, int(utt.duration * 120), 120.0, style,
                             np.random.default_rng(i))
        d2_120 = np.abs(np.diff(w120[:, MOUTH], 2, axis=0)).max()
        assert d2_30 < 0.6
        assert d2_120 < 0.2 * d2_30
    # blinks are fast by nature (close in ~40-100 ms) but continuous: steps shrink with the step
    utt, style, _ = corpus[0]
    w480 = speech_motion(utt.phones, int(utt.duration * 480), 480.0, style,
                         np.random.default_rng(0))
    blink = w480[:, ARKIT_INDEX["eyeBlinkLeft"]]
    assert blink.max() > 0.8 and np.abs(np.diff(blink)).max() < 0.1


def test_frame_rates_agree_and_determinism(corpus):
    utt, style, _ = corpus[0]
    w25 = speech_motion(utt.phones, int(utt.duration * 25), 25.0, style, np.random.default_rng(9))
    w30 = speech_motion(utt.phones, int(utt.duration * 30), 30.0, style, np.random.default_rng(9))
    # t = 0.2 s * m is frame 5m at 25 fps and frame 6m at 30 fps: same continuous model
    m = np.arange(0, min((w25.shape[0] - 1) // 5, (w30.shape[0] - 1) // 6) + 1)
    np.testing.assert_allclose(w25[5 * m], w30[6 * m], atol=1e-6)
    # and in between, 30 fps linearly interpolated to 25 fps times stays close
    t25 = np.arange(w25.shape[0]) / 25
    t30 = np.arange(w30.shape[0]) / 30
    interp = np.stack([np.interp(t25, t30, w30[:, j]) for j in range(52)], axis=1)
    ok = t25 <= t30[-1]
    assert np.abs(interp[ok][:, MOUTH] - w25[ok][:, MOUTH]).mean() < 0.01
    again = speech_motion(utt.phones, w25.shape[0], 25.0, style, np.random.default_rng(9))
    assert np.array_equal(again, w25)
    other = speech_motion(utt.phones, w25.shape[0], 25.0, style, np.random.default_rng(10))
    assert not np.array_equal(other, w25)  # upper face and jitter differ per utterance


def test_upper_face_blinks_and_brows():
    phones = [Phone("_", 0.0, 60.0)]
    style = SpeakingStyle(blink_rate=0.35, brow_rate=0.1)
    w = speech_motion(phones, 1800, 30.0, style, np.random.default_rng(2))
    blink = w[:, ARKIT_INDEX["eyeBlinkLeft"]]
    assert np.array_equal(blink, w[:, ARKIT_INDEX["eyeBlinkRight"]])  # both eyes
    closed = blink > 0.5
    onsets = np.flatnonzero(closed[1:] & ~closed[:-1])
    assert 0.15 * 60 <= onsets.size <= 0.55 * 60  # ~0.2-0.5 blinks per second
    lengths = np.diff(np.flatnonzero(np.diff(np.r_[0, closed, 0].astype(int))))[::2] / 30
    assert lengths.max() <= 0.3
    assert w[:, ARKIT_INDEX["browInnerUp"]].max() > 0.1
    gaze = w[:, ARKIT_INDEX["eyeLookOutLeft"]] + w[:, ARKIT_INDEX["eyeLookInLeft"]]
    assert 0 < gaze.max() < 0.3


def test_style_changes_motion(corpus):
    utt = corpus[1][0]
    n = int(utt.duration * 25)
    calm = SpeakingStyle(amplitude=0.8, asymmetry=0.0, variation=0.0)
    strong = SpeakingStyle(amplitude=1.2, asymmetry=0.15, variation=0.0)
    a = speech_motion(utt.phones, n, 25.0, calm, np.random.default_rng(0))
    b = speech_motion(utt.phones, n, 25.0, strong, np.random.default_rng(0))
    assert b[:, ARKIT_INDEX["jawOpen"]].sum() > 1.3 * a[:, ARKIT_INDEX["jawOpen"]].sum()
    left, right = ARKIT_INDEX["mouthStretchLeft"], ARKIT_INDEX["mouthStretchRight"]
    assert np.allclose(a[:, left], a[:, right]) and b[:, left].sum() > 1.2 * b[:, right].sum()


def test_bad_inputs():
    with pytest.raises(ValueError, match="phones"):
        speech_motion([], 10, 25.0, SpeakingStyle(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="fps"):
        speech_motion([Phone("_", 0, 1)], 10, 0.0, SpeakingStyle(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="amplitude"):
        speech_motion([Phone("_", 0, 1)], 10, 25.0, SpeakingStyle(amplitude=9.0),
                      np.random.default_rng(0))
    with pytest.raises(ValueError, match="viseme"):
        speech_motion([Phone("Q", 0, 1)], 10, 25.0, SpeakingStyle(), np.random.default_rng(0))


def test_rounding_anticipates_over_consonants():
    """/s/ before /u/ is already rounded ("Sue"), /s/ before /i/ is spread ("see")."""
    style = SpeakingStyle(variation=0.0, blink_rate=0.0, brow_rate=0.0)
    out = {}
    for vowel in ("uː", "iː"):
        phones = [Phone("_", 0.0, 0.3), Phone("s", 0.3, 0.42), Phone(vowel, 0.42, 0.62, 1),
                  Phone("_", 0.62, 1.0)]
        w = speech_motion(phones, 100, 100.0, style, np.random.default_rng(0))
        out[vowel] = w[36]  # centre of /s/
    assert out["uː"][ARKIT_INDEX["mouthPucker"]] > 0.3
    assert out["iː"][ARKIT_INDEX["mouthPucker"]] < 0.02
    assert out["iː"][ARKIT_INDEX["mouthStretchLeft"]] > out["uː"][ARKIT_INDEX["mouthStretchLeft"]]
