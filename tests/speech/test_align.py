"""Transcript alignment: DTW against a known warp, then espeak-ng recordings of other voices,
rates and pitches (with silence and noise) aligned and compared with their own phone timings."""

import numpy as np
import pytest

from avguide import AUDIO_RATE
from avguide.errors import BadInputError
from avguide.speech import align
from avguide.speech.espeak import SILENCE, Voice, speak

TEXT = "Peter picked a peck of pickled peppers, and the bees buzzed by the open window."


def test_dtw_path_recovers_a_known_warp():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    source = np.sort(np.r_[np.arange(40), [3, 3, 10, 25, 25, 25, 31]])  # y repeats some of x's frames
    y = x[source] + 0.01 * rng.normal(size=(len(source), 6))
    path = align.dtw_path(x, y)
    assert path[0].tolist() == [0, 0] and path[-1].tolist() == [39, len(source) - 1]
    assert (np.diff(path, axis=0) >= 0).all() and (np.diff(path, axis=0).sum(axis=1) >= 1).all()
    np.testing.assert_array_equal(path[:, 0], source[path[:, 1]])  # every y frame paired with its source
    assert len(path) == len(source)


def _boundary_errors(user, phones, offset=0.0):
    """|aligned start - true start| (s) of every non-silent phone, in order."""
    got = [p for p in phones if p.ipa != SILENCE]
    true = [p for p in user.phones if p.ipa != SILENCE]
    assert [p.ipa for p in got] == [p.ipa for p in true]
    return np.array([abs(g.start - offset - t.start) for g, t in zip(got, true)])


@pytest.mark.parametrize("variant,rate,pitch,snr_db", [("f3", 230, 70, 10.0), ("m3", 130, 30, None),
                                                       ("f2", 180, 60, 20.0)])
def test_other_voices_align_to_their_own_phone_timings(variant, rate, pitch, snr_db):
    user = speak(TEXT, Voice(variant=variant, rate_wpm=rate, pitch=pitch))
    pad = 0.7  # seconds of silence before (and 0.5 after) the speech
    audio = np.concatenate([np.zeros(int(pad * AUDIO_RATE), np.float32), user.audio,
                            np.zeros(AUDIO_RATE // 2, np.float32)])
    if snr_db is not None:
        rms = float(np.sqrt(np.mean(user.audio ** 2)))
        audio = audio + np.random.default_rng(1).normal(0, rms / 10 ** (snr_db / 20), audio.shape).astype(np.float32)
    result = align.align_transcript(audio, TEXT)
    phones = result.phones
    assert not result.doubtful, result.cost
    # the phones tile the recording in order
    assert phones[0].start == 0.0 and phones[-1].end == pytest.approx(len(audio) / AUDIO_RATE)
    assert all(a.end == pytest.approx(b.start) and a.start <= a.end for a, b in zip(phones, phones[1:]))
    err = _boundary_errors(user, phones, offset=pad)
    assert np.median(err) < 0.015 and np.percentile(err, 90) < 0.040, (np.median(err), np.percentile(err, 90))


def test_the_recordings_silence_is_not_given_to_the_phones():
    user = speak(TEXT, Voice(variant="m1", rate_wpm=175))
    audio = np.concatenate([np.zeros(AUDIO_RATE, np.float32), user.audio, np.zeros(AUDIO_RATE, np.float32)])
    phones = align.align_transcript(audio, TEXT).phones
    assert phones[0].ipa == SILENCE and phones[0].end > 0.9
    assert phones[-1].ipa == SILENCE and phones[-1].start < len(audio) / AUDIO_RATE - 0.9


@pytest.mark.parametrize("variant", ["klatt3", "f3"])
def test_another_sentences_transcript_is_doubtful(variant):
    take = speak(TEXT, Voice(variant=variant, rate_wpm=190)).audio
    right = align.align_transcript(take, TEXT)
    wrong = align.align_transcript(take, "A bright moon rose above the calm harbour at midnight.")
    assert not right.doubtful and wrong.doubtful and wrong.cost > right.cost + 0.1, (right.cost, wrong.cost)


def test_bad_transcripts_and_recordings_are_named(monkeypatch):
    audio = speak("Hello there.", Voice(variant="m1")).audio
    with pytest.raises(BadInputError, match="take.wav: the transcript is empty"):
        align.align_transcript(audio, "  ", "take.wav")
    with pytest.raises(BadInputError, match="take.wav: espeak-ng pronounces nothing"):
        align.align_transcript(audio, "...", "take.wav")
    monkeypatch.setattr(align, "MAX_CELLS", 100)
    with pytest.raises(BadInputError, match="take.wav: .* too long .* split the recording"):
        align.align_transcript(audio, "Hello there.", "take.wav")
