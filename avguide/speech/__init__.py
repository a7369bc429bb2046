"""Speech: espeak-ng synthesis with timed phonemes and per-subject voices (:mod:`.espeak`) and
the phoneme -> viseme table used by motion synthesis and VER (:mod:`.visemes`). Submodules are
imported on demand."""
