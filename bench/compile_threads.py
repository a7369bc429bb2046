"""Why the renderer's compiled kernels use inductor's ``cpp_wrapper`` (not a test).

    python bench/compile_threads.py [--reps 5]

Times one fused elementwise function (a 2000x3000 float32 map and a column sum) eagerly and
``torch.compile``'d with and without ``cpp_wrapper``: 10 calls in one thread, then 10 calls in
each of two threads at once (1 intra-op thread each, as ``map_batch`` workers run). Prints the
scaling ``2 * t_one / t_two`` (2 = the threads overlap fully; <= 1 = they take turns, i.e. the
GIL is held while the kernel runs), median over ``--reps``.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import torch


def _f(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x.sin() * y.cos() + x * y).exp().sum(0)


def _scaling(fn, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
    def work():
        for _ in range(10):
            fn(x, y)

    t0 = time.perf_counter()
    work()
    one = time.perf_counter() - t0
    threads = [threading.Thread(target=work) for _ in range(2)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    two = time.perf_counter() - t0
    return one, two, 2 * one / two


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    x, y = torch.randn(2000, 3000), torch.randn(2000, 3000)
    fns = {"eager": _f,
           "compiled": torch.compile(_f, dynamic=True),
           "compiled cpp_wrapper": torch.compile(_f, dynamic=True, options={"cpp_wrapper": True})}
    for name, fn in fns.items():
        fn(x, y)  # compile / warm up
        runs = [_scaling(fn, x, y) for _ in range(args.reps)]
        one, two, s = (statistics.median(r[i] for r in runs) for i in range(3))
        print(f"{name:>22}: 1 thread x 10 calls {1000 * one:7.1f} ms | 2 threads x 10 calls {1000 * two:7.1f} ms "
              f"| scaling {s:.2f}")


if __name__ == "__main__":
    main()
