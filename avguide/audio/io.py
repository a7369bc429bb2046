"""Reading and writing waveforms: moved to the boundary layer, :mod:`avguide.io.media`.

Everything inside avguide is 16 kHz mono float32; :func:`load_audio` resamples and down-mixes
(or, strict, refuses a file that is not already 16 kHz mono), :func:`save_wav` writes PCM16.
"""

from avguide.io.media import MIN_SECONDS, load_audio, save_wav

__all__ = ["MIN_SECONDS", "load_audio", "save_wav"]
