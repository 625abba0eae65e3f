"""Pictures and the markdown report of an evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np


def frame_grid_png(path: str | Path, rows: Sequence[np.ndarray], row_labels: Sequence[str],
                   col_labels: Sequence[str], title: str = "", scale: float = 0.9) -> Path:
    """A labelled grid of uint8 frames: ``rows[i]`` is (C, H, W, 3) (rows may be shorter: blank cells)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * scale + 1.2, n_rows * scale + 0.6), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < len(row):
                ax.imshow(row[j], interpolation="nearest")
            if i == 0 and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=7)
            if j == 0:
                ax.set_ylabel(row_labels[i], fontsize=7, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    # leave the title a line (0.25 in) above the column labels
    fig.tight_layout(pad=0.2, rect=(0, 0, 1, 1 - 0.25 / fig.get_figheight() if title else 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def rollout_grid(path: str | Path, real: np.ndarray, dream: np.ndarray, last_context: np.ndarray,
                 clips: Sequence[int], horizons: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 200, 300),
                 warps: np.ndarray | None = None) -> Path:
    """Real vs dreamed frames at a few horizons (columns) for a few clips (row pairs); with ``warps`` (the
    motion prior's warp of each previous dreamed frame) a row of those between them (row triples)."""
    hs = [h for h in horizons if h <= real.shape[1]]
    rows, labels = [], []
    for n in clips:
        named = [("real", real)] + ([("warp", warps)] if warps is not None else []) + [("dream", dream)]
        for name, frames in named:
            rows.append(np.stack([last_context[n]] + [frames[n, h - 1] for h in hs]))
            labels.append(f"{name} #{n}")
    title = "open-loop rollout from real context, true actions"
    if warps is not None:
        title = "warp: the previous dreamed frame moved by the action"
    return frame_grid_png(path, rows, labels, ["context"] + [f"h={h}" for h in hs], title=title)


def sequence_grid(path: str | Path, pairs: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str) -> Path:
    """Rows of (real, dream) sequences: ``pairs`` = (label, real (n + 1, ...) incl. start, dream (n, ...))."""
    rows, labels = [], []
    for label, real, dream in pairs:
        rows += [real, np.concatenate([real[:1], dream])]
        labels += [f"real {label}", f"dream {label}"]
    n = max(len(r) for r in rows)
    return frame_grid_png(path, rows, labels, ["start"] + [str(i) for i in range(1, n)], title=title)


def markdown_table(rows: Sequence[dict[str, Any]], floatfmt: str = ".2f") -> str:
    """A markdown table with the keys of the first row as columns."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])

    def cell(v: Any) -> str:
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "|".join("---" for _ in keys) + "|"]
    lines += ["| " + " | ".join(cell(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def text_table(rows: Sequence[dict[str, Any]], floatfmt: str = ".2f") -> str:
    """The same table, fixed-width for a terminal."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    cells = [keys] + [[format(r.get(k, ""), floatfmt) if isinstance(r.get(k), float) else str(r.get(k, ""))
                       for k in keys] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(keys))]
    fmt = lambda c: "  ".join(x.rjust(w) if i else x.ljust(w) for i, (x, w) in enumerate(zip(c, widths)))  # noqa: E731
    return "\n".join([fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(c) for c in cells[1:]])
