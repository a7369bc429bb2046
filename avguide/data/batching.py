"""Padded batches of recordings for training and evaluation (batch size > 1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avguide.data.layouts import DatasetIndex, SampleRef
from avguide.data.samples import Sample, load_sample


@dataclass
class Batch:
    """B recordings padded to the longest; masks mark real frames/samples."""

    names: list[str]
    texts: list[str | None]
    audio: torch.Tensor           # (B, Lmax) float32, zero-padded
    audio_lengths: torch.Tensor   # (B,) int64
    vertices: torch.Tensor        # (B, Tmax, V, 3) float32, zero-padded
    lengths: torch.Tensor         # (B,) int64 frames
    template: torch.Tensor        # (B, V, 3) float32
    subject: torch.Tensor         # (B,) int64 style index (-1: unseen subject)
    fps: float

    @property
    def mask(self) -> torch.Tensor:
        """(B, Tmax) bool, True on real frames."""
        t = torch.arange(self.vertices.shape[1])
        return t[None, :] < self.lengths[:, None]

    def to(self, device: torch.device | str) -> "Batch":
        """Move the tensors to ``device``."""
        kw = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Batch(**kw)


def collate(samples: list[Sample]) -> Batch:
    """Pad a list of samples into a :class:`Batch` (all must share fps and vertex count)."""
    assert samples and len({s.fps for s in samples}) == 1
    b = len(samples)
    t_max = max(s.vertices.shape[0] for s in samples)
    l_max = max(s.audio.shape[0] for s in samples)
    v = samples[0].vertices.shape[1]
    audio = torch.zeros(b, l_max)
    verts = torch.zeros(b, t_max, v, 3)
    for i, s in enumerate(samples):
        audio[i, : s.audio.shape[0]] = torch.from_numpy(s.audio)
        verts[i, : s.vertices.shape[0]] = torch.from_numpy(s.vertices)
    return Batch(
        names=[s.name for s in samples], texts=[s.text for s in samples],
        audio=audio, audio_lengths=torch.tensor([s.audio.shape[0] for s in samples]),
        vertices=verts, lengths=torch.tensor([s.vertices.shape[0] for s in samples]),
        template=torch.from_numpy(np.stack([s.template for s in samples])),
        subject=torch.tensor([s.subject_index for s in samples]), fps=samples[0].fps,
    )


class RecordingDataset(torch.utils.data.Dataset):
    """Map-style dataset over some recordings of a :class:`DatasetIndex`, loaded lazily.

    Args:
        index: the scanned dataset.
        refs: the recordings (e.g. ``index.split("train")``).
        cache: keep loaded samples in memory (fine for the synthetic benchmark; BIWI is ~4 GB).
        need_text: transcripts are required.
    """

    def __init__(self, index: DatasetIndex, refs: list[SampleRef], *, cache: bool = False,
                 need_text: bool = False):
        self.index, self.refs, self.need_text = index, list(refs), need_text
        self._cache: dict[int, Sample] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> Sample:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        s = load_sample(self.index, self.refs[i], need_text=self.need_text)
        if self._cache is not None:
            self._cache[i] = s
        return s


def make_loader(dataset: RecordingDataset, batch_size: int, *, shuffle: bool, seed: int,
                workers: int = 0, sampler: torch.utils.data.Sampler | None = None) -> torch.utils.data.DataLoader:
    """A DataLoader yielding :class:`Batch` objects, shuffled reproducibly from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False,
        sampler=sampler, collate_fn=collate, num_workers=workers, generator=g,
        persistent_workers=workers > 0,
    )
