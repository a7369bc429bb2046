"""Input conventions of the Auto-AVSR expert, in one place.

- Video: 25 fps grayscale lip crops in [0, 1], normalised with mean 0.421 and std 0.165
  (Auto-AVSR's constants; the paper's code used std 0.4, docs/design.md section 2, point 5).
- Audio: 16 kHz mono, ``layer_norm`` over the whole utterance (zero mean, unit variance).
- 640 audio samples make one video frame (16000 / 25): :func:`align_audio` cuts or pads the
  audio to the video's frames.
"""

from __future__ import annotations

import torch

from avguide import AUDIO_RATE, EXPERT_FPS
from avguide.errors import BadInputError

VIDEO_MEAN = 0.421
VIDEO_STD = 0.165
SAMPLES_PER_FRAME = AUDIO_RATE // EXPERT_FPS  # 640
AUDIO_EPS = 1e-8


def normalize_video(frames: torch.Tensor) -> torch.Tensor:
    """Normalise grayscale frames for the expert.

    Args:
        frames: (..., H, W) float, intensities in [0, 1] (divide uint8 video by 255 first).
    Returns:
        Same shape and dtype, ``(frames - 0.421) / 0.165``. Differentiable.
    """
    return (frames - VIDEO_MEAN) / VIDEO_STD


def normalize_audio(audio: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Per-utterance layer norm of 16 kHz waveforms, ignoring padding.

    Args:
        audio: (B, L) float waveforms.
        lengths: (B,) int valid samples per row; None means all L are valid.
    Returns:
        (B, L) float: each row's valid part has zero mean and unit (biased) variance
        (``eps`` 1e-8 as in Auto-AVSR); padded samples are set to 0.
    Raises:
        BadInputError: ``audio`` is not 2-D or ``lengths`` does not fit it.
    """
    if audio.dim() != 2:
        raise BadInputError(f"audio: expected (B, L) waveforms, got shape {tuple(audio.shape)}")
    B, L = audio.shape
    if lengths is None:
        lengths = torch.full((B,), L, dtype=torch.long, device=audio.device)
    mask = length_mask(lengths, L).to(audio.dtype)  # (B, L)
    n = lengths.to(audio.dtype).clamp(min=1).unsqueeze(1)  # (B, 1)
    mean = (audio * mask).sum(1, keepdim=True) / n
    var = (((audio - mean) * mask) ** 2).sum(1, keepdim=True) / n
    return (audio - mean) / torch.sqrt(var + AUDIO_EPS) * mask


def length_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """Boolean mask of valid positions.

    Args:
        lengths: (B,) int valid lengths.
        size: padded length.
    Returns:
        (B, size) bool, True where ``index < lengths[b]``.
    Raises:
        BadInputError: a length is negative or larger than ``size``.
    """
    if lengths.dim() != 1:
        raise BadInputError(f"lengths: expected shape (B,), got {tuple(lengths.shape)}")
    if len(lengths) and (int(lengths.min()) < 0 or int(lengths.max()) > size):
        raise BadInputError(f"lengths: must be in [0, {size}], got {lengths.tolist()}")
    return torch.arange(size, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def align_audio(audio: torch.Tensor, audio_lengths: torch.Tensor, video_lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut or zero-pad 16 kHz audio to 640 samples per 25 fps video frame.

    Args:
        audio: (B, L) float. audio_lengths: (B,) int64. video_lengths: (B,) int64 frames at 25 fps.
    Returns:
        audio (B, Tmax * 640) float and lengths (B,) = min(audio_lengths, video_lengths * 640).
    """
    n = int(video_lengths.max()) * SAMPLES_PER_FRAME
    out = audio.new_zeros(audio.shape[0], n)
    m = min(n, audio.shape[1])
    out[:, :m] = audio[:, :m]
    lengths = torch.minimum(audio_lengths, video_lengths.to(audio_lengths.device) * SAMPLES_PER_FRAME)
    valid = torch.arange(n, device=audio.device)[None, :] < lengths[:, None]
    return out * valid, lengths
