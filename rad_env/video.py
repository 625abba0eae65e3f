"""Writing frame sequences as videos (imageio; mp4 via ffmpeg, gif when no ffmpeg backend exists)."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Sequence

import imageio.v3 as iio
import numpy as np


def check_video_path(path: str | Path) -> Path:
    """``path`` as a Path if a video can be written there: not a folder, and no file where a folder
    must be (``IsADirectoryError``/``NotADirectoryError`` otherwise). Tools call it before long work."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "a video path is a folder (give a file name, e.g. DIR/video.mp4)",
                                str(path))
    for parent in path.parents:  # the first existing ancestor must be a folder
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a folder, cannot hold the video", str(parent))
            break
    return path


def write_video(path: str | Path, frames: Sequence[np.ndarray] | np.ndarray, fps: int = 8, size: int = 256) -> Path:
    """Write uint8 frames (T, H, W, 3) as an mp4, scaled up to about ``size`` pixels high.

    Falls back to a gif (same name, ``.gif``) if no ffmpeg backend is available. Returns the path written.
    Folders it creates for the video are removed again if writing fails.
    """
    from .cli import removed_if_failed

    path = Path(path)
    video = np.asarray(frames, dtype=np.uint8)
    if video.ndim != 4 or video.shape[-1] != 3 or len(video) == 0:
        raise ValueError(f"frames must be a non-empty uint8 (T, H, W, 3) sequence, got {video.shape}")
    check_video_path(path)
    scale = max(1, size // video.shape[1])
    video = video.repeat(scale, axis=1).repeat(scale, axis=2)
    with removed_if_failed(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            iio.imwrite(path, video, fps=fps, codec="libx264", macro_block_size=1)
        except Exception:  # noqa: BLE001 - no ffmpeg backend: write a gif instead
            path = path.with_suffix(".gif")
            iio.imwrite(path, video, duration=1000 / fps, loop=0)
    return path


def write_side_by_side(path: str | Path, real: np.ndarray, dream: np.ndarray, fps: int = 8) -> Path:
    """Write real | dream frames ``(T, H, W, 3)`` side by side (a white gap between) as a video."""
    gap = np.full((real.shape[0], real.shape[1], 2, 3), 255, np.uint8)
    return write_video(path, np.concatenate([real, gap, dream], axis=2), fps=fps)
