"""``avguide bench``: baseline vs AV-guided animators, evaluated by a separate reader.

    from avguide.bench import run_bench
    report = run_bench("ci", "out/bench_ci")          # OUT/report.md, report.json, plots.png, videos
"""

from avguide.bench.presets import PRESET_NAMES, BenchConfig, bench_preset
from avguide.bench.runner import resolve_bench_config, run_bench

__all__ = ["BenchConfig", "PRESET_NAMES", "bench_preset", "resolve_bench_config", "run_bench"]
