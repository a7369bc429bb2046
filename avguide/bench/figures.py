"""The benchmark's figures: bar charts with error bars, and ground truth | baseline | AV-guided videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avguide.io import atomic_path, load_vertices

PLOTTED = (("cer", "CER (%)", 100.0), ("ver", "VER (%)", 100.0), ("lve", "LVE (x1e-5 m²)", 1e5))


def plot_conditions(report: dict, path: str | Path) -> str:
    """One row of bar charts (CER, VER, LVE) per animator: mean over seeds with std error bars;
    dashed lines: the reader's ceiling (ground truth) and floor (static face).

    Args:
        report: :func:`avguide.bench.report.build_report`'s dict.
        path: the PNG to write (atomically).
    Returns:
        The path written, as a string.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = report["order"]
    fig, axes = plt.subplots(len(order), len(PLOTTED), figsize=(4.5 * len(PLOTTED), 3.6 * len(order)), squeeze=False)
    for r, (animator, names) in enumerate(order):
        conds = report["table"][animator]
        for c, (key, label, scale) in enumerate(PLOTTED):
            ax = axes[r][c]
            means = [(conds[n].get(key) or {}).get("mean") for n in names]
            stds = [(conds[n].get(key) or {}).get("std") or 0.0 for n in names]
            x = np.arange(len(names))
            ax.bar(x, [scale * (m or 0.0) for m in means], yerr=[scale * s for s in stds], capsize=3,
                   color=["#888888" if n.startswith("baseline") else "#3b7dd8" for n in names])
            for ref, style, text in ((report["ground_truth"], "--", "GT"), (report["static"], ":", "static")):
                if key in ref and key != "lve":
                    ax.axhline(scale * ref[key], color="k", linestyle=style, linewidth=1, label=text)
            ax.set_xticks(x, names, rotation=35, ha="right", fontsize=8)
            ax.set_title(f"{animator}: {label}", fontsize=10)
            if key != "lve" and r == 0 and c == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return str(path)


def side_by_side_video(data: str | Path, baseline_dir: str | Path, guided_dir: str | Path, out_dir: str | Path,
                       n_sentences: int, size: int) -> list[str]:
    """Videos of the first ``n_sentences`` test recordings: ground truth | baseline | AV-guided,
    captioned, with the speech muxed in (one MP4 per sentence).

    Args:
        data: dataset root. baseline_dir, guided_dir: prediction folders (``<name>.npy``).
        out_dir: folder of the videos (``<name>.mp4``). size: panel side in pixels (even).
    Returns:
        The written paths.
    """
    from avguide.data.layouts import open_dataset
    from avguide.data.samples import load_sample
    from avguide.render.video import render_video

    index = open_dataset(data)
    part, names = None, None
    from avguide.assets.head import load_head

    head = load_head()
    if index.faces is not None and head.vertices.shape[0] == index.n_vertices:
        part, names = np.asarray(head.vertex_part), tuple(head.part_names)
    written = []
    for ref in index.split("test")[:n_sentences]:
        s = load_sample(index, ref)
        seqs = [s.vertices] + [load_vertices(Path(d) / f"{ref.name}.npy", index.n_vertices, what="prediction")
                               for d in (baseline_dir, guided_dir)]
        path = Path(out_dir) / f"{ref.name}.mp4"
        kw = {"vertex_part": part, "part_names": names} if part is not None else {}
        render_video(seqs, index.faces, path, fps=s.fps, audio_path=ref.wav,
                     captions=["ground truth", "baseline", "AV-guided"], size=size, view="front", **kw)
        written.append(str(path))
    return written
