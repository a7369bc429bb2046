"""Video captions: a line of white text on black (matplotlib), drawn once per video.

Without torch, so that the frame process (:class:`avguide.render.frameprocess.FrameProcess`)
draws them too.
"""

from __future__ import annotations

import numpy as np

CAPTION_HEIGHT = 28
"""Rows of a video's caption band, above each panel (:func:`avguide.render.video.render_video`)."""


def caption_image(text: str, width: int, height: int = CAPTION_HEIGHT) -> np.ndarray:
    """Rasterise a caption once (matplotlib Agg, white text on black).

    Returns:
        (height, width, 3) uint8.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / 100, height / 100), dpi=100, facecolor="black")
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.5, text, color="white", ha="center", va="center", fontsize=height * 0.45)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[:height, :width, :3].copy()


def caption_rows(captions: list[str], width: int, height: int = CAPTION_HEIGHT) -> np.ndarray:
    """The caption band of a video: one caption per panel of ``width`` pixels, side by side.

    Returns:
        (height, width * len(captions), 3) uint8.
    """
    return np.concatenate([caption_image(c, width, height) for c in captions], axis=1)
