"""Device and precision choices shared by training, evaluation and the dream envs."""

from __future__ import annotations

import os
from contextlib import nullcontext

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; anything else is passed to torch."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return resolved


def autocast_context(device: torch.device, amp: str = "auto"):
    """bf16 autocast on CUDA for ``auto``/``bf16``; full precision otherwise."""
    if amp not in ("auto", "bf16", "none"):
        raise ValueError(f"amp must be auto, bf16 or none, got {amp!r}")
    if amp == "none" or (amp == "auto" and device.type != "cuda"):
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def set_cpu_threads(threads: int = 0) -> int:
    """Set torch's CPU threads: ``n > 0`` exactly, ``0`` half the CPU cores (at least 1), ``-1`` torch's
    default. More threads than free cores makes torch's thread pool spin: on a busy 2-core machine a small
    model runs ~10x slower with 2 threads than with 1. Returns the number in use."""
    if threads == 0:
        threads = max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) // 2))
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
