"""avguide: speech-driven 3D facial animation with audio-visual guidance from a lip-reading expert.

Shape legend used in every docstring and shape comment of the package:

    B   batch (sequences)            T   frames (motion or video)
    V   vertices                     F   faces (triangles)
    L   audio samples (16 kHz)       D   feature / model width
    K   blendshapes / codes          N   images (B*T flattened)
    H,W image height, width          C   image channels
    S   tokens of a transcript       P   phonemes

Subpackages are imported on demand; importing ``avguide`` itself is cheap.
"""

__version__ = "0.1.0"

AUDIO_RATE = 16_000
"""Sample rate (Hz) of every waveform inside avguide; loaders resample to it."""

EXPERT_FPS = 25
"""Frame rate the lip-reading expert always sees (640 audio samples per video frame)."""
