"""espeak-ng wrapper: rate, dtype, phone timing, determinism, voices, IPA phonemisation."""

import multiprocessing

import numpy as np
import pytest

from avguide.errors import BadInputError
from avguide.speech.espeak import SILENCE, Voice, speak, text_to_ipa
from avguide.speech.espeak import VARIANTS, sample_voice

TEXT = "Judge Fiona chose the bright yellow shoes, and I saw them."
VOICE = Voice("m3", rate_wpm=170, pitch=45, pitch_range=55)


def _speak_bytes(args):
    text, voice = args
    return speak(text, voice).audio.tobytes()


def test_audio_is_16k_float32_and_phones_tile_it():
    u = speak(TEXT, VOICE)
    assert u.audio.dtype == np.float32 and u.audio.ndim == 1
    assert np.abs(u.audio).max() <= 1.0 and np.abs(u.audio).max() > 0.1
    assert u.duration == pytest.approx(u.audio.shape[0] / 16000)
    # ~3 s of speech for 11 words at 170 wpm; a 22.05 kHz stream mislabelled would be 38% long.
    assert 2.5 < u.duration < 4.5
    assert u.phones[0].start == 0.0
    assert u.phones[-1].end == pytest.approx(u.duration, abs=1e-9)
    for a, b in zip(u.phones, u.phones[1:]):
        assert a.end == pytest.approx(b.start, abs=1e-12)
    assert all(p.end > p.start for p in u.phones)
    # the comma gives a pause, with silence before and after speech
    assert [p.ipa for p in u.phones].count(SILENCE) >= 2
    speech = [p.ipa for p in u.phones if p.ipa != SILENCE]
    assert speech == [p for word in text_to_ipa(TEXT) for p in word]


def test_word_timings_and_multichar_phones():
    u = speak(TEXT, VOICE)
    assert [w.text for w in u.words] == TEXT.replace(",", "").rstrip(".").split()
    assert all(w.end > w.start for w in u.words)
    assert all(a.end <= b.start + 1e-9 for a, b in zip(u.words, u.words[1:]))
    ipas = [p.ipa for p in u.phones]
    for multi in ("dʒ", "oʊ", "tʃ", "aɪ", "uː"):
        assert multi in ipas
    assert not any(("ˈ" in p or "ˌ" in p) for p in ipas)
    assert any(p.stress == 1 for p in u.phones)
    # the audio is loud inside a stressed vowel and near-silent in the final pause
    oo = next(p for p in u.phones if p.ipa == "uː")
    seg = u.audio[int(oo.start * 16000):int(oo.end * 16000)]
    tail = u.audio[int(u.phones[-1].start * 16000):]
    assert np.sqrt(np.mean(seg ** 2)) > 10 * (np.sqrt(np.mean(tail ** 2)) + 1e-6)


def test_deterministic_bytes_in_process_and_in_workers():
    a = speak(TEXT, VOICE)
    speak("Something else first, to change any internal state.", Voice("f2"))
    b = speak(TEXT, VOICE)
    assert a.audio.tobytes() == b.audio.tobytes()
    assert a.phones == b.phones
    # every subject variant, whatever was synthesised before, in this process and in workers
    short = "Five boys."
    first = {v: speak(short, Voice(v)).audio.tobytes() for v in VARIANTS}
    for v in reversed(VARIANTS):
        assert speak(short, Voice(v)).audio.tobytes() == first[v], v
    jobs = [(TEXT, VOICE)] + [(short, Voice(v)) for v in VARIANTS]
    for method in ("spawn", "fork"):
        with multiprocessing.get_context(method).Pool(1) as pool:
            remote = pool.map(_speak_bytes, jobs)
        assert remote == [a.audio.tobytes()] + [first[v] for v in VARIANTS], method


def test_two_voices_differ():
    a = speak(TEXT, Voice("m1", 170, 40, 50))
    b = speak(TEXT, Voice("linda", 170, 60, 50))
    n = min(a.audio.size, b.audio.size)
    assert a.audio.size != b.audio.size or not np.array_equal(a.audio[:n], b.audio[:n])
    fast = speak(TEXT, Voice("m1", 260, 40, 50))
    assert fast.duration < 0.8 * a.duration


def test_sample_voice_distinct_subjects():
    rng = np.random.default_rng(0)
    voices = [sample_voice(rng, i) for i in range(2 * len(VARIANTS))]
    assert len({v.variant for v in voices[:len(VARIANTS)]}) == len(VARIANTS)
    assert len({(v.variant, v.pitch) for v in voices}) == len(voices)
    assert all(not v.check() for v in voices)


def test_sample_voice_rate_range():
    default = [sample_voice(np.random.default_rng(5), i) for i in range(4)]
    assert default == [sample_voice(np.random.default_rng(5), i, rate_wpm=(150, 200)) for i in range(4)]
    fast = [sample_voice(np.random.default_rng([5, i]), i, rate_wpm=(230, 240)) for i in range(40)]
    assert all(230 <= v.rate_wpm <= 240 for v in fast) and len({v.rate_wpm for v in fast}) > 5
    with pytest.raises(BadInputError, match="rate_wpm"):
        sample_voice(np.random.default_rng(0), 0, rate_wpm=(200, 150))


def test_text_to_ipa_hand_cases():
    assert text_to_ipa("map") == [["m", "æ", "p"]]
    assert text_to_ipa("five") == [["f", "aɪ", "v"]]
    assert text_to_ipa("church judge") == [["tʃ", "ɜː", "tʃ"], ["dʒ", "ʌ", "dʒ"]]
    assert text_to_ipa("Boy, cow.") == [["b", "ɔɪ"], ["k", "aʊ"]]


def test_bad_inputs():
    with pytest.raises(BadInputError, match="text"):
        speak("  ", VOICE)
    with pytest.raises(BadInputError, match="rate_wpm"):
        speak(TEXT, Voice("m1", rate_wpm=10))
    with pytest.raises(BadInputError, match="no voice"):
        speak(TEXT, Voice("m1", language="xx-nonexistent"))
