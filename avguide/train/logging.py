"""Run logging: a progress bar per epoch, one summary line per epoch, TensorBoard scalars (if
tensorboard is installed), and the per-epoch means of the step logs. ``metrics.jsonl`` (one JSON
object per epoch) is written by :class:`avguide.train.run.Run` with the checkpoint it belongs to."""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm


class RunLogger:
    """Logs scalars of the main process; every other rank gets a silent logger.

    Args:
        run_dir: the run directory (TensorBoard writes to ``RUN/tb``).
        enabled: False on non-zero ranks.
        start_step: resuming: TensorBoard events after this step are purged.
    """

    def __init__(self, run_dir: str | Path, *, enabled: bool = True, start_step: int = 0):
        self.run_dir, self.enabled = Path(run_dir), enabled
        self._tb = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step or None)
        except ImportError:
            self._tb = None

    def bar(self, total: int, desc: str) -> tqdm:
        """A progress bar on stderr (disabled on non-main ranks)."""
        return tqdm(total=total, desc=desc, leave=False, disable=not self.enabled, file=sys.stderr,
                    dynamic_ncols=True)

    def scalars(self, step: int, values: dict[str, float], prefix: str) -> None:
        """TensorBoard scalars ``prefix/name``."""
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"{prefix}/{k}", v, step)

    def epoch_line(self, epoch: int, step: int, values: dict[str, float], seconds: float) -> None:
        """One line on stdout."""
        if not self.enabled:
            return
        shown = "  ".join(f"{k} {v:.4g}" for k, v in values.items())
        print(f"epoch {epoch:4d}  step {step:7d}  {shown}  ({seconds:.1f} s)", flush=True)
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


class EpochMeans:
    """Means over an epoch's steps of the logged values, each over the steps that logged it
    (e.g. gradient probes, taken every few steps)."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, logs: dict[str, float]) -> None:
        for k, v in logs.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": v / self.counts[k] for k, v in self.sums.items()}
