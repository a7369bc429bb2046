"""Run a batched render on chunks of the batch in parallel threads, with autograd.

The renderer is a chain of small tensor operations (gathers, scatters, elementwise arithmetic on
lists of covered pixels) that PyTorch runs one after another and barely spreads over CPU cores.
Frames are independent, so the batch splits into chunks that run at the same time in Python
threads (PyTorch releases the GIL inside its operations): on 2 cores, 2 workers with one
intra-op thread each (``torch.set_num_threads(1)``) nearly halve the time (``bench/render.py``).

:func:`map_batch` keeps one autograd graph per chunk and runs the backward passes of the chunks
in threads too, so forward + backward are both parallel. The result and its gradients equal
calling the function once per chunk in sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import torch
from torch.autograd.function import once_differentiable

ChunkFn = Callable[..., torch.Tensor]
"""``fn(sl, *chunks) -> (n, ...)`` tensor: ``sl`` is the chunk's slice of the batch (to slice
per-item arguments such as cameras), ``chunks`` the batched tensors sliced by it."""


def chunk_bounds(n: int, workers: int, max_chunk: int | None = None) -> list[slice]:
    """Split a batch of ``n`` into at least ``workers`` (and chunks of at most ``max_chunk``) near-equal slices.

    Args:
        n: batch size (>= 0); workers: >= 1; max_chunk: optional largest chunk (bounds memory).
    Returns:
        consecutive slices covering ``range(n)``, none empty (an empty list for ``n = 0``).
    """
    k = max(1, min(n, workers))
    if max_chunk:
        k = max(k, -(-n // max_chunk))
    edges = [round(i * n / k) for i in range(k + 1)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _run(pool: ThreadPoolExecutor | None, fn: Callable, items: Sequence) -> list:
    """``[fn(x) for x in items]``, in the pool's threads when there is one."""
    return [fn(x) for x in items] if pool is None else list(pool.map(fn, items))


class _MapBatch(torch.autograd.Function):
    """Chunked forward with one graph per chunk; chunked, threaded backward."""

    @staticmethod
    def forward(ctx, fn: ChunkFn, bounds: list[slice], workers: int, *tensors: torch.Tensor) -> torch.Tensor:
        needs = [t.requires_grad for t in tensors]

        def run(sl: slice):
            with torch.enable_grad():
                leaves = [t[sl].detach().requires_grad_(need) for t, need in zip(tensors, needs)]
                return leaves, fn(sl, *leaves)

        with ThreadPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
            parts = _run(pool, run, bounds)
        ctx.parts, ctx.bounds, ctx.workers, ctx.needs = parts, bounds, workers, needs
        ctx.shapes = [t.shape for t in tensors]
        return torch.cat([out.detach() for _, out in parts])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        def back(i: int) -> list[torch.Tensor | None]:
            leaves, out = ctx.parts[i]
            want = [leaf for leaf, need in zip(leaves, ctx.needs) if need]
            if not out.requires_grad:
                return [None] * len(want)
            # retain_graph: the chunk graphs live as long as this node (a second backward works)
            return list(torch.autograd.grad(out, want, grad[ctx.bounds[i]], retain_graph=True, allow_unused=True))

        with ThreadPoolExecutor(ctx.workers) if ctx.workers > 1 else nullcontext() as pool:
            per_chunk = _run(pool, back, range(len(ctx.bounds)))
        grads, j = [], 0
        for shape, need in zip(ctx.shapes, ctx.needs):
            if not need:
                grads.append(None)
                continue
            pieces = [g[j] if g[j] is not None else grad.new_zeros((sl.stop - sl.start, *shape[1:]))
                      for g, sl in zip(per_chunk, ctx.bounds)]
            grads.append(torch.cat(pieces))
            j += 1
        return (None, None, None, *grads)


def map_batch(fn: ChunkFn, tensors: Sequence[torch.Tensor], *, workers: int = 1,
              max_chunk: int | None = None) -> torch.Tensor:
    """``torch.cat([fn(sl, *(t[sl] for t in tensors)) for sl in chunks])``, the chunks in threads.

    Args:
        fn: ``fn(sl, *chunks)`` returning an ``(len(sl), ...)`` tensor; it must treat batch
            items independently (then the result does not depend on the chunking) and be
            thread-safe (pure tensor code is).
        tensors: batched inputs, each ``(N, ...)``; gradients flow to those that require them
            (only to them: whatever ``fn`` closes over is a constant).
        workers: threads (1: everything in the calling thread, no overhead).
        max_chunk: largest chunk (bounds peak memory); the batch is split into at least
            ``workers`` chunks.
    Returns:
        ``(N, ...)`` tensor, the chunks' outputs concatenated. Differentiable once (its
        backward cannot itself be differentiated).
    """
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError(f"map_batch: inputs disagree on the batch size: {[tuple(t.shape) for t in tensors]}")
    bounds = chunk_bounds(n, workers, max_chunk)
    if len(bounds) <= 1:
        return fn(slice(0, n), *tensors)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _MapBatch.apply(fn, bounds, workers, *tensors)

    def run(sl: slice) -> torch.Tensor:
        with torch.no_grad():
            return fn(sl, *(t[sl] for t in tensors))

    with ThreadPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        return torch.cat(_run(pool, run, bounds))
