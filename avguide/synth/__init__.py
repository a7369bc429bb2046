"""The synthetic benchmark: speech (espeak-ng), visemes, the blendshape rig, subjects, generator.

Submodules are imported on demand (``from avguide.synth.rig import apply_blendshapes``).
"""
