"""Speech: espeak-ng synthesis with timed phonemes (:mod:`.espeak`), speaker voices
(:mod:`.voices`) and the phoneme -> viseme table used by motion synthesis and VER
(:mod:`.visemes`). Submodules are imported on demand."""
