"""Frame helpers shared by the recorders and importers: squaring, resizing and video reading."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def resize_frames(frames: np.ndarray, size: int | None) -> np.ndarray:
    """Resize ``uint8 (N, H, W, 3)`` frames to ``(N, size, size, 3)`` (``size=None``: unchanged).

    Downscaling by an integer factor uses an exact block mean (area pooling) in numpy; any other
    size uses Pillow's box filter (area resampling) frame by frame.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (N, H, W, 3), got {frames.shape}")
    if size is None:
        return np.ascontiguousarray(frames, dtype=np.uint8)
    if size < 1:
        raise ValueError(f"frame size must be positive, got {size}")
    n, h, w, _ = frames.shape
    if (h, w) == (size, size):
        return np.ascontiguousarray(frames, dtype=np.uint8)
    if h % size == 0 and w % size == 0:
        fh, fw = h // size, w // size
        blocks = frames.reshape(n, size, fh, size, fw, 3).astype(np.float32)
        return np.rint(blocks.mean(axis=(2, 4))).clip(0, 255).astype(np.uint8)
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow ships with the base install
        raise ImportError(f"resizing {h}x{w} frames to {size}x{size} (not an integer factor) needs Pillow: "
                          "pip install pillow") from exc
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        out[i] = np.asarray(Image.fromarray(np.asarray(frames[i], np.uint8)).resize((size, size), Image.BOX))
    return out


SQUARE_RULES = ("crop", "letterbox")


def square_frames(frames: np.ndarray, rule: str = "crop") -> np.ndarray:
    """Make ``uint8 (N, H, W, 3)`` frames square: ``crop`` keeps the centred ``min(H, W)`` square (a
    16:9 Minecraft frame loses its left and right edges), ``letterbox`` pads the short side with black
    bars to ``max(H, W)`` (the whole view, smaller). Square frames are returned unchanged."""
    frames = np.asarray(frames)
    if rule not in SQUARE_RULES:
        raise ValueError(f"square rule must be one of {SQUARE_RULES}, got {rule!r}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (N, H, W, 3), got {frames.shape}")
    n, h, w, _ = frames.shape
    if h == w:
        return frames
    if rule == "crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return np.ascontiguousarray(frames[:, top:top + side, left:left + side])
    side = max(h, w)
    out = np.zeros((n, side, side, 3), np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    out[:, top:top + h, left:left + w] = frames
    return out


def read_video(path: str | os.PathLike) -> np.ndarray:
    """All frames of a video file (mp4 via imageio's ffmpeg plugin) as ``uint8 (N, H, W, 3)``."""
    import imageio.v3 as iio

    path = Path(path)
    try:
        frames = iio.imread(path)
    except Exception as exc:  # ffmpeg's message is its whole log: keep its last line (the reason)
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ValueError(f"{path}: cannot decode video: {lines[-1] if lines else type(exc).__name__}") from exc
    frames = np.asarray(frames)
    if frames.ndim == 3 and frames.shape[-1] == 3:  # a single frame
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"{path}: expected RGB video frames (N, H, W, 3), got shape {frames.shape}")
    return np.ascontiguousarray(frames, dtype=np.uint8)
