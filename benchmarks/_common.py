"""Helpers shared by the benchmark scripts (not a benchmark itself).

The scripts run as ``python -m benchmarks.<name>`` from the repository root, or as
``python benchmarks/<name>.py`` once the project is installed (``pip install -e .`` installs the
``benchmarks`` package too).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


# -- machine / process ------------------------------------------------------------------------
def machine_description() -> dict[str, Any]:
    """What the numbers were measured on (printed with every result)."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        load = None
    return {
        "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_1_5_15min": load,
    }


def rss_bytes() -> int:
    """Current resident set size of this process (``/proc/self/statm``; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - non-Linux fallback
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if sys.platform == "darwin" else 1024)


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``ys`` over ``xs`` (0 with fewer than two points)."""
    if len(xs) < 2:
        return 0.0
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if np.ptp(x) == 0:
        return 0.0
    return float(np.polyfit(x, y, 1)[0])


# -- random models and dream envs -------------------------------------------------------------
def random_model(memory: str = "lstm", preset: str = "tiny", seed: int = 0, num_actions: int = 6,
                 device: str | torch.device = "cpu", **overrides: Any):
    """A randomly initialised world model of ``preset`` (timings and state sizes only); ``overrides``
    are further RADConfig fields (e.g. ``seq_len=64``)."""
    from rad_env.model import RADConfig, WorldModel

    torch.manual_seed(seed)
    config = RADConfig.preset(preset, memory=memory, num_actions=num_actions, **overrides)
    return WorldModel(config).to(device).eval()


def random_start_frames(model, segments: int = 4, seed: int = 0):
    """Random uint8 start segments of one attention window for ``model``."""
    from rad_env.envs.context import StartFrames

    cfg = model.config
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (segments, cfg.window, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    actions = rng.integers(0, cfg.num_actions, (segments, cfg.window))
    actions[:, 0] = cfg.null_action
    return StartFrames(frames, actions, source="random")


def benchmark_core(num_envs: int, *, checkpoint: str | None = None, context: str | None = None,
                   device: str = "cpu", sampling_steps: int | None = None, memory: str = "lstm",
                   seed: int = 0, compile: bool = False, amp: str = "auto"):
    """A :class:`rad_env.envs.core.DreamCore` from ``checkpoint`` (with ``context`` start frames,
    default: the shipped ones), or from a random tiny model with random start frames; ``amp``: the dream's
    precision (:func:`rad_env.runtime.inference_autocast`).

    Returns (core, description of the model used)."""
    from rad_env.envs.factory import make_dream_core
    from rad_env.runtime import resolve_device

    if checkpoint:
        core = make_dream_core(checkpoint, context, num_envs, device=device, sampling_steps=sampling_steps,
                               compile=compile, amp=amp)
        return core, f"checkpoint {checkpoint} (memory={core.model.config.memory})"
    model = random_model(memory, seed=seed, device=resolve_device(device))
    core = make_dream_core(model, random_start_frames(model, seed=seed), num_envs, device=device,
                           sampling_steps=sampling_steps, compile=compile, amp=amp)
    return core, (f"randomly initialised tiny model (memory={memory}, "
                  f"{model.num_parameters() / 1e6:.2f}M parameters, random start frames)")


# -- output -----------------------------------------------------------------------------------
def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt: str = ".2f") -> str:
    """A plain fixed-width text table."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v)

    text = [[cell(h) for h in headers]] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(text):
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt: str = ".2f") -> str:
    def cell(v: Any) -> str:
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))
    return path
