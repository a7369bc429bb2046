"""Training: the run core (:mod:`~avguide.train.run`: set-up, the locked run directory, resume),
the optimiser (:mod:`~avguide.train.optim`), named losses, logging, distributed helpers, and the
two loops over them as thin recipes: :mod:`~avguide.train.animator` (stages baseline, vq and the
AV-guided av, whose objective is :class:`~avguide.train.avguidance.AVGuidance`) and
:mod:`~avguide.train.expert` (stage 1, the lip-reading expert)."""
