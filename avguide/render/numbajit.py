"""numba, optional: the one switch and decorator of the compiled kernels in ``avguide.render``
(``jitzbuf``, ``jitshade``, ``jitalias``, ``jitblend``, ``jitraster``).

Each kernel is a plain Python function decorated with :func:`njit`: compiled by numba when it
imports (once, then loaded from numba's on-disk cache: ``NUMBA_CACHE_DIR``, or ``__pycache__``
beside the module), left as Python otherwise. Callers ask :func:`available` (through the kernel's
module, ``jitzbuf.available()``, so a test can switch one module off) and keep a torch path for
when it is False.

This module imports neither torch nor the rest of ``avguide``: the video's frame process loads
the kernels before torch is imported (:mod:`avguide.render.frameprocess`).
"""

from __future__ import annotations

try:
    import numba
except ImportError:  # a declared dependency; without it every caller keeps its torch path
    numba = None


def available() -> bool:
    """Whether numba imported (then the kernels decorated with :func:`njit` run compiled)."""
    return numba is not None


def njit(fn=None, *, error_model: str = "python"):
    """``numba.njit(cache=True, nogil=True, error_model=error_model)``, or ``fn`` itself without
    numba. ``nogil``: worker threads draw frames side by side. ``error_model="numpy"`` drops the
    division-by-zero checks of inner loops (a kernel that never divides by zero, or wants IEEE
    inf/nan). Used as ``@njit`` or ``@njit(error_model="numpy")``."""
    if fn is None:
        return lambda f: njit(f, error_model=error_model)
    if numba is None:
        return fn
    return numba.njit(cache=True, nogil=True, error_model=error_model)(fn)
