"""espeak-ng speech synthesis with timed phonemes, through ctypes.

The shared library and its data come from the PyPI package ``espeakng-loader``. Every call loads and
initialises the library afresh in synchronous mode (see :func:`_session` for why); a callback collects the 22.05 kHz int16 samples together with the phoneme and word events
(each carries its sample position). Audio is resampled to 16 kHz with soxr.

Phone names are IPA without stress marks (``"ʌ"``, ``"tʃ"``, ``"aɪ"``, ``"uː"``, ``"aɪɚ"``,
``"əl"``); the stress goes to :attr:`Phone.stress`; pauses are the silence phone ``"_"``. The
phones of an :class:`Utterance` tile ``[0, duration]`` without gaps. :func:`sample_voice`
gives each synthetic subject its own voice.
"""

from __future__ import annotations

import _ctypes
import contextlib
import ctypes
import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from avguide import AUDIO_RATE
from avguide.errors import AvguideError, BadInputError

SILENCE = "_"
"""Name of the silence (pause) phone."""

_STRESS = {"ˈ": 1, "ˌ": 2}

# speak_lib.h facts (API revision 12).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PHONEMES_IPA = 0x02
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE, _PARAM_WORDGAP = 1, 3, 4, 7
_SEPARATOR = "|"


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT``: 40 bytes on 64-bit (the pointer fields are 8-aligned)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character position in the text
        ("length", ctypes.c_int),  # word length in characters (word events)
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # sample position in the output
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Voice:
    """One speaker's espeak-ng settings.

    Speech is bit-reproducible for the variants in :data:`VARIANTS` (and the default voice);
    espeak's breathy variants are reproducible only within one process.

    Attributes:
        variant: espeak voice variant appended as ``language+variant`` (e.g. ``"m3"``, ``"f2"``);
            empty for the default voice.
        rate_wpm: speaking rate, words per minute (80..450).
        pitch: base pitch 0..100 (50 normal).
        pitch_range: pitch range 0..100 (0 monotone, 50 normal).
        language: espeak language/voice name.
        word_gap: extra pause between words in units of 10 ms.
    """

    variant: str
    rate_wpm: int = 175
    pitch: int = 50
    pitch_range: int = 50
    language: str = "en-us"
    word_gap: int = 0

    def check(self) -> list[str]:
        """Return a list of error strings (empty when the voice is valid)."""
        errors = []
        if not 80 <= self.rate_wpm <= 450:
            errors.append(f"Voice.rate_wpm={self.rate_wpm} must be in 80..450")
        for name in ("pitch", "pitch_range"):
            if not 0 <= getattr(self, name) <= 100:
                errors.append(f"Voice.{name}={getattr(self, name)} must be in 0..100")
        if not 0 <= self.word_gap <= 100:
            errors.append(f"Voice.word_gap={self.word_gap} must be in 0..100")
        if not self.language or any(c in self.language + self.variant for c in "+ /\\"):
            errors.append(f"Voice language/variant {self.language!r}/{self.variant!r} "
                          "must be non-empty names without '+', spaces or slashes")
        return errors


@dataclass(frozen=True)
class Phone:
    """One timed phone. ``ipa`` has no stress marks; silence is ``"_"``.

    Attributes:
        ipa: IPA phoneme (may be several characters, e.g. ``"tʃ"``, ``"oʊ"``, ``"uː"``).
        start: start time in seconds.
        end: end time in seconds (``end > start``).
        stress: 0 unstressed, 1 primary (ˈ), 2 secondary (ˌ).
    """

    ipa: str
    start: float
    end: float
    stress: int = 0


@dataclass(frozen=True)
class Word:
    """One timed word: the text span espeak reported and its time span in seconds."""

    text: str
    start: float
    end: float


@dataclass
class Utterance:
    """Synthesised speech.

    Attributes:
        audio: (L,) float32 waveform in [-1, 1] at 16 kHz.
        phones: timed phones tiling [0, duration] in order (silence ``"_"`` included).
        words: timed words in order.
        duration: ``L / 16000`` seconds.
    """

    audio: np.ndarray
    phones: list[Phone]
    words: list[Word]
    duration: float


def _split_stress(name: str) -> tuple[str, int]:
    """Remove stress marks from an espeak IPA phoneme name; return (ipa, stress)."""
    stress = 0
    for mark, level in _STRESS.items():
        if mark in name:
            stress = stress or level
            name = name.replace(mark, "")
    return name, stress


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    """The process's C library (espeak-ng's noise source is its ``rand()``)."""
    return ctypes.CDLL(None)


class _Engine:
    """A freshly loaded espeak-ng library instance; see :func:`_session`."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                               ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                          ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                          ctypes.c_void_p, ctypes.c_void_p]
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
                                                   ctypes.c_int]
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        # The data path MUST be given, otherwise espeak exits the process when it looks elsewhere.
        rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(),
            _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA)
        if rate <= 0:
            self.close()
            raise AvguideError(f"espeak-ng failed to initialise (returned {rate})")
        self.sample_rate = rate
        self._chunks: list[bytes] = []
        self._events: list[tuple[int, int, int, int, bytes]] = []
        self._callback = _CALLBACK(self._collect)  # referenced for as long as the library lives
        self.lib.espeak_SetSynthCallback(self._callback)

    def close(self) -> None:
        """Terminate espeak and unload the library so that its static state is discarded."""
        self.lib.espeak_Terminate()
        _ctypes.dlclose(self.lib._handle)

    def _collect(self, wav, n: int, events) -> int:
        if wav and n > 0:
            self._chunks.append(ctypes.string_at(wav, 2 * n))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type in (_EVENT_WORD, _EVENT_PHONEME):
                raw = ctypes.string_at(ctypes.addressof(e) + _Event.id.offset, 8)
                self._events.append((e.type, e.text_position, e.length, e.sample, raw))
            i += 1
        return 0

    def set_voice(self, voice: Voice) -> None:
        name = voice.language + (f"+{voice.variant}" if voice.variant else "")
        if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise BadInputError(f"espeak-ng has no voice {name!r} (Voice.language/variant)")
        for param, value in ((_PARAM_RATE, voice.rate_wpm), (_PARAM_PITCH, voice.pitch),
                             (_PARAM_RANGE, voice.pitch_range), (_PARAM_WORDGAP, voice.word_gap)):
            self.lib.espeak_SetParameter(param, int(value), 0)

    def synth(self, text: str) -> tuple[np.ndarray, list[tuple[int, int, int, int, bytes]]]:
        """Synthesise ``text`` with the current voice; return int16 samples and raw events."""
        self._chunks, self._events = [], []
        _libc().srand(1)  # breathy variants (f2, f3, f5, ...) draw noise from libc rand()
        data = text.encode("utf-8")
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                    None, None)
        if err != 0:
            raise AvguideError(f"espeak_Synth failed with code {err}")
        samples = np.frombuffer(b"".join(self._chunks), dtype=np.int16)
        return samples, self._events

    def phonemes(self, text: str) -> list[str]:
        """IPA transcription, one string per clause, phonemes joined by ``_SEPARATOR``."""
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        ptr = ctypes.c_char_p(ctypes.addressof(buf))
        mode = _PHONEMES_IPA | (ord(_SEPARATOR) << 8)
        clauses = []
        while ptr.value:
            out = self.lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, mode)
            clauses.append((out or b"").decode("utf-8"))
        return clauses


_LOCK = threading.Lock()
"""Serialises espeak use within a process (the library is not re-entrant)."""


@contextlib.contextmanager
def _session() -> Iterator[_Engine]:
    """A fresh espeak-ng instance for one call, used under the process lock.

    espeak-ng keeps waveform-generator state (flutter phase, echo buffer, glottal-cycle and
    pitch counters) in static variables that neither espeak_Terminate nor espeak_Initialize
    reset, so two syntheses of the same text in one process differ. Loading the library afresh
    for every call (about 5 ms) makes the output a function of the input alone, and works the
    same in the main process and in multiprocessing workers (fork or spawn). The breathy
    variants also draw noise from the C library's ``rand()``, which :meth:`_Engine.synth`
    re-seeds (``srand(1)``) before every synthesis.
    """
    with _LOCK:
        engine = _Engine()
        try:
            yield engine
        finally:
            engine.close()


VARIANTS: tuple[str, ...] = (
    "m1", "f1", "m2", "f4", "m3", "Annie", "m4", "belinda", "m5", "linda", "m6", "Andrea", "m7",
)
"""espeak-ng voice variants (7 male, 6 female), assigned to subjects in this order. Variants
with a ``breath`` setting (f2, f3, f5, m8, ...) are left out: their output differs between
processes (not bit-reproducible), these ones are checked to be identical across processes."""


def sample_voice(rng: np.random.Generator, index: int, language: str = "en-us",
                 rate_wpm: tuple[int, int] = (150, 200)) -> Voice:
    """The voice of subject ``index``: its own variant, plus a drawn rate, pitch and range.

    Subjects 0..12 get 13 different variants; beyond that variants repeat and the subject is
    told apart by a base pitch shifted by 12 per cycle (wrapping in 20..80).

    Args:
        rng: generator for the continuous settings (rate, pitch, range 30..70).
        index: subject number >= 0.
        language: espeak language name.
        rate_wpm: inclusive range of the speaking rate in words per minute (80..450); the
            default 150..200 is the benchmark's (the same draws as before the range existed).

    Returns:
        the subject's Voice.

    Raises:
        BadInputError: negative index.
    """
    if index < 0:
        raise BadInputError(f"subject index must be >= 0, got {index}")
    lo, hi = rate_wpm
    if not 80 <= lo <= hi <= 450:
        raise BadInputError(f"rate_wpm: need 80 <= min <= max <= 450, got {rate_wpm}")
    cycle, slot = divmod(int(index), len(VARIANTS))
    pitch = int(rng.integers(35, 66))
    pitch = 20 + (pitch - 20 + 12 * cycle) % 61
    return Voice(
        variant=VARIANTS[slot],
        rate_wpm=int(rng.integers(lo, hi + 1)),
        pitch=pitch,
        pitch_range=int(rng.integers(30, 71)),
        language=language,
    )


def espeak_version() -> str:
    """Version string of the loaded espeak-ng library, e.g. ``"1.52.0"``."""
    with _session() as engine:
        engine.lib.espeak_Info.restype = ctypes.c_char_p
        engine.lib.espeak_Info.argtypes = [ctypes.c_void_p]
        return engine.lib.espeak_Info(None).decode().split()[0]


def _check_text(text: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise BadInputError(f"text must be a non-empty string, got {text!r}")


def _timed_phones(events, n_samples: int, rate: int) -> list[Phone]:
    """Turn raw phoneme events into phones tiling [0, n_samples / rate] seconds.

    Unnamed events are either pauses (silence) or espeak's in-word transition pseudo-phoneme
    (``;``); the latter shares the text position of the phone before it and is merged into it.
    """
    marks: list[tuple[int, str, int]] = []  # (sample, ipa, stress)
    last_text_pos = None
    for kind, text_pos, _, sample, raw in events:
        if kind != _EVENT_PHONEME:
            continue
        name = raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")
        if not name:
            if marks and text_pos == last_text_pos and marks[-1][1] != SILENCE:
                continue  # transition inside a word: the previous phone lasts longer
            ipa, stress = SILENCE, 0
        else:
            ipa, stress = _split_stress(name)
        last_text_pos = text_pos
        sample = min(max(sample, 0), n_samples)
        if marks and marks[-1][1] == ipa == SILENCE:
            continue  # consecutive pauses merge
        marks.append((sample, ipa, stress))
    if not marks or marks[0][0] > 0:
        marks.insert(0, (0, SILENCE, 0))
    phones = []
    for i, (sample, ipa, stress) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else n_samples
        if end > sample:
            phones.append(Phone(ipa, sample / rate, end / rate, stress))
    return phones


def _timed_words(text: str, events, phones: list[Phone], rate: int) -> list[Word]:
    """Words from word events: from the word's first to its last non-silent phone.

    A word event comes a few milliseconds before the word's first phoneme event; the phones of
    a word are the non-silent ones starting between its event and the next word's event.
    """
    starts = [(tp, ln, s / rate) for kind, tp, ln, s, _ in events if kind == _EVENT_WORD]
    words = []
    for i, (text_pos, length, at) in enumerate(starts):
        limit = starts[i + 1][2] if i + 1 < len(starts) else float("inf")
        own = [p for p in phones if p.ipa != SILENCE and at <= p.start < limit]
        start, end = (own[0].start, own[-1].end) if own else (at, at)
        words.append(Word(text[text_pos - 1:text_pos - 1 + length], start, end))
    return words


def speak(text: str, voice: Voice) -> Utterance:
    """Synthesise ``text`` with espeak-ng and return 16 kHz audio with timed phones and words.

    Deterministic: equal (text, voice) give byte-identical audio and identical timings.
    Thread- and process-safe (calls are serialised by a per-process lock).

    Args:
        text: UTF-8 text to speak (plain text, no SSML).
        voice: speaker settings.

    Returns:
        Utterance with audio (L,) float32 in [-1, 1] at 16 kHz, phones tiling [0, L / 16000] s,
        words, duration = L / 16000.

    Raises:
        BadInputError: empty text, invalid voice settings or unknown voice name.
        AvguideError: espeak-ng failed.
    """
    import soxr

    _check_text(text)
    errors = voice.check()
    if errors:
        raise BadInputError("; ".join(errors))
    with _session() as engine:
        engine.set_voice(voice)
        samples, events = engine.synth(text)
        rate = engine.sample_rate
    if samples.size == 0:
        raise BadInputError(f"espeak-ng produced no audio for text {text!r}")
    audio = soxr.resample(samples.astype(np.float32) / 32768.0, rate, AUDIO_RATE, quality="HQ")
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)  # (L,)
    duration = audio.shape[0] / AUDIO_RATE
    phones = _timed_phones(events, samples.shape[0], rate)
    words = _timed_words(text, events, phones, rate)
    scale = duration / (samples.shape[0] / rate)  # tile the 16 kHz duration exactly
    phones = [Phone(p.ipa, p.start * scale, p.end * scale, p.stress) for p in phones]
    words = [Word(w.text, w.start * scale, w.end * scale) for w in words]
    return Utterance(audio=audio, phones=phones, words=words, duration=duration)


def text_to_ipa(text: str, language: str = "en-us") -> list[list[str]]:
    """Phonemise ``text`` with espeak-ng: one list of IPA phonemes per spoken word.

    Stress marks are removed; length marks (``ː``) and multi-character phonemes (``tʃ``,
    ``aɪ``, ``oʊ``, ``aɪɚ``, ``əl``) stay whole. Words are as espeak groups them (a hyphenated
    compound may be one word).

    Args:
        text: UTF-8 text.
        language: espeak language/voice name.

    Returns:
        list of words, each a non-empty list of IPA phoneme strings.

    Raises:
        BadInputError: empty text or unknown language.
    """
    _check_text(text)
    with _session() as engine:
        engine.set_voice(Voice(variant="", language=language))
        clauses = engine.phonemes(text)
    words = []
    for clause in clauses:
        for word in clause.split():
            phones = [_split_stress(p)[0] for p in word.split(_SEPARATOR)]
            phones = [p for p in phones if p]
            if phones:
                words.append(phones)
    return words
