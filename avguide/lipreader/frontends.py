"""Front-ends of the expert: lip video -> (B, T, D) and 16 kHz audio -> (B, T, D).

The ResNet front-ends are Auto-AVSR's: module and parameter names follow its state dict
(``frontend3D.0``, ``trunk.layer1.0.conv1``, ``downsample.0`` ...), so published checkpoints
load strictly. Stage widths are arguments; Auto-AVSR uses (64, 128, 256, 512).

:class:`MelFrontend` is avguide's cheaper audio alternative for small experts (not in
Auto-AVSR): a log-mel spectrogram and four 1-D convolutions instead of a ResNet-18 on the raw
waveform. It learns from little speech much faster than the raw-waveform ResNet, which Auto-AVSR
trains on thousands of hours.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avguide.audio.mel import log_mel, mel_filterbank
from avguide.lipreader.preprocess import SAMPLES_PER_FRAME


class Swish(nn.Module):
    """x * sigmoid(x) (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 / 3-tap convs) in 2-D (``dims=2``) or 1-D (``dims=1``)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, dims: int):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        self.conv1 = conv(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = norm(out_ch)
        self.relu1 = Swish()
        self.conv2 = conv(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = norm(out_ch)
        self.relu2 = Swish()
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(conv(in_ch, out_ch, 1, stride, bias=False), norm(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + residual)


def _stage(in_ch: int, out_ch: int, stride: int, dims: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(in_ch, out_ch, stride, dims), BasicBlock(out_ch, out_ch, 1, dims))


class ResNetTrunk2D(nn.Module):
    """Per-frame ResNet-18 body (no stem) with global average pooling: (N, C, H, W) -> (N, D)."""

    def __init__(self, in_ch: int, widths: Sequence[int]):
        super().__init__()
        self.layer1 = _stage(in_ch, widths[0], 1, 2)
        self.layer2 = _stage(widths[0], widths[1], 2, 2)
        self.layer3 = _stage(widths[1], widths[2], 2, 2)
        self.layer4 = _stage(widths[2], widths[3], 2, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)  # (N, D)


class VisualFrontend(nn.Module):
    """3-D conv stem + 2-D ResNet-18 trunk with Swish activations.

    Conv3d(1, w0, (5, 7, 7), stride (1, 2, 2)) -> BN -> Swish -> MaxPool (1, 3, 3) / (1, 2, 2),
    then the trunk on every frame. Spatial size is free (88x88 in Auto-AVSR).
    """

    def __init__(self, widths: Sequence[int] = (64, 128, 256, 512)):
        super().__init__()
        self.out_dim = widths[-1]
        self.trunk = ResNetTrunk2D(widths[0], widths)
        self.frontend3D = nn.Sequential(
            nn.Conv3d(1, widths[0], (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False),
            nn.BatchNorm3d(widths[0]),
            Swish(),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """
        Args:
            video: (B, T, 1, H, W) float, normalised grayscale frames.
        Returns:
            (B, T, D) float frame features, D = last stage width.
        """
        B, T = video.shape[:2]
        x = self.frontend3D(video.transpose(1, 2))  # (B, C, T, H', W')
        x = x.transpose(1, 2).flatten(0, 1)  # (B*T, C, H', W')
        return self.trunk(x).view(B, T, -1)  # (B, T, D)


class ResNetTrunk1D(nn.Module):
    """1-D ResNet-18 with its stem: (B, 1, L) -> (B, D, L // 640)."""

    def __init__(self, widths: Sequence[int]):
        super().__init__()
        self.conv1 = nn.Conv1d(1, widths[0], 80, 4, 38, bias=False)
        self.bn1 = nn.BatchNorm1d(widths[0])
        self.relu = Swish()
        self.layer1 = _stage(widths[0], widths[0], 1, 1)
        self.layer2 = _stage(widths[0], widths[1], 2, 1)
        self.layer3 = _stage(widths[1], widths[2], 2, 1)
        self.layer4 = _stage(widths[2], widths[3], 2, 1)
        self.avgpool = nn.AvgPool1d(20, 20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, C, L/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, D, L/32)
        return self.avgpool(x)  # (B, D, L/640)


def whole_frames(audio: torch.Tensor) -> torch.Tensor:
    """The audio front-ends' input: whole 25 fps frames of 640 samples.

    Args:
        audio: (B, L) or (B, L, 1) float, normalised 16 kHz waveforms.
    Returns:
        (B, 640 * (L // 640)) float: the samples beyond the last whole frame dropped.
    """
    if audio.dim() == 3:
        audio = audio.squeeze(-1)  # (B, L)
    return audio[:, : audio.shape[1] // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME]


class AudioFrontend(nn.Module):
    """ResNet-18 1-D front-end for 16 kHz audio: 640 samples -> 1 frame.

    Conv1d(1, w0, 80, stride 4, pad 38) -> BN -> Swish -> 4 stages (strides 1, 2, 2, 2)
    -> AvgPool1d(20).
    """

    def __init__(self, widths: Sequence[int] = (64, 128, 256, 512)):
        super().__init__()
        self.out_dim = widths[-1]
        self.trunk = ResNetTrunk1D(widths)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, L) or (B, L, 1) normalised 16 kHz audio -> (B, L // 640, D) frame features."""
        return self.trunk(whole_frames(audio)[:, None]).transpose(1, 2)  # (B, T, D)


class MelFrontend(nn.Module):
    """Log-mel front-end for 16 kHz audio: 640 samples -> 1 frame (avguide's, not Auto-AVSR's).

    80-band log10 mel energies at 100 Hz (25 ms Hann window, 10 ms hop), normalised by a
    BatchNorm over the bands, then Conv1d(80, w0, 3) and Conv1d(w0, w1, 3, stride 2),
    Conv1d(w1, w2, 3, stride 2), Conv1d(w2, w3, 3), each followed by BN and Swish: 4 mel frames
    -> 1 output frame at 25 fps, the rate of the video. Output frame j reads samples
    ``640 j + 320 +- 1480``, centred on video frame j's 640 samples.
    """

    def __init__(self, widths: Sequence[int] = (64, 128, 256, 512), n_mels: int = 80):
        super().__init__()
        self.out_dim = widths[-1]
        self.register_buffer("bank", mel_filterbank(400, n_mels), persistent=False)
        self.norm = nn.BatchNorm1d(n_mels)
        layers, ch = [], n_mels
        for width, stride in zip(widths, (1, 2, 2, 1)):
            layers += [nn.Conv1d(ch, width, 3, stride, 1, bias=False), nn.BatchNorm1d(width), Swish()]
            ch = width
        self.convs = nn.Sequential(*layers)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, L) or (B, L, 1) normalised 16 kHz audio -> (B, L // 640, D) frame features."""
        audio = whole_frames(audio)  # (B, 640T)
        t = audio.shape[1] // SAMPLES_PER_FRAME
        # mel frame i is centred on sample 160 i; frames 2 .. 4T + 1 (320 zeros appended) put the
        # centre of output frame j on sample 640 j + 320, the middle of video frame j
        wav = F.pad(audio, (0, SAMPLES_PER_FRAME // 2))  # (B, 640T + 320)
        mel = log_mel(wav, bank=self.bank)[:, 2: 4 * t + 2]  # (B, 4T, n_mels)
        x = self.convs(self.norm(mel.transpose(1, 2)))  # (B, D, T)
        return x.transpose(1, 2)  # (B, T, D)
