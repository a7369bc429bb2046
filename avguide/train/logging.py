"""Run logging: a progress bar per epoch, one summary line per epoch, TensorBoard scalars (if
tensorboard is installed) and ``metrics.jsonl`` (one JSON object per epoch) in the run directory."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tqdm import tqdm


class RunLogger:
    """Logs scalars of the main process; every other rank gets a silent logger.

    Args:
        run_dir: the run directory.
        enabled: False on non-zero ranks.
        start_step: resuming: ``metrics.jsonl`` lines after this step are dropped.
    """

    def __init__(self, run_dir: str | Path, *, enabled: bool = True, start_step: int = 0):
        self.run_dir, self.enabled = Path(run_dir), enabled
        self._tb = None
        if not enabled:
            return
        jsonl = self.run_dir / "metrics.jsonl"
        if jsonl.is_file():  # keep history up to the resumed step only
            kept = [ln for ln in jsonl.read_text().splitlines() if ln and json.loads(ln).get("step", 0) <= start_step]
            jsonl.write_text("".join(k + "\n" for k in kept))
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

    def epoch(self, epoch: int, step: int, values: dict[str, float], seconds: float) -> None:
        """One line on stdout and one JSON line in metrics.jsonl."""
        if not self.enabled:
            return
        shown = "  ".join(f"{k} {v:.4g}" for k, v in values.items())
        print(f"epoch {epoch:4d}  step {step:7d}  {shown}  ({seconds:.1f} s)", flush=True)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"epoch": epoch, "step": step, "seconds": round(seconds, 3), **values}) + "\n")
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
