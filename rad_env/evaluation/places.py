"""Where the agent is in each frame, and which frames revisit a place seen before.

A *place* is a grid cell plus a heading. Two kinds of recorded extras give places:

- Memory Maze (``agent_pos`` (T, 2) in grid units, ``agent_dir`` (T, 2) unit vector): the maze cell
  ``floor(agent_pos)`` and the heading ``atan2(dir_y, dir_x)``; same heading within 45 degrees.
- Minecraft (``x``, ``z`` in blocks and ``yaw`` in degrees, (T,) each: the RAD authors' 8-column
  recordings or MineRL's ``location_stats``): the cell ``floor((x, z) / MINECRAFT_CELL)`` of a
  horizontal grid of 2x2-block cells, and the yaw; same heading within 30 degrees (one and a half
  20-degree turns). Frames whose position is not recorded (NaN) are never places.

A frame *revisits* when its cell and heading match a frame at least ``window`` frames earlier, i.e.
one that has left the model's attention window: only memory can bring it back.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

MAZE_HEADING_TOLERANCE = 45.0  # degrees
MINECRAFT_CELL = 2.0  # blocks
MINECRAFT_HEADING_TOLERANCE = 30.0  # degrees
UNKNOWN_CELL = -(2**62)  # the cell of a frame whose position was not recorded


def places(extras: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(cells int64 (..., T, 2), headings in degrees (..., T), heading tolerance) from per-frame
    extras, or None when they hold no positions. Unrecorded positions get cell UNKNOWN_CELL."""
    if "agent_pos" in extras and "agent_dir" in extras:
        pos, direction = np.asarray(extras["agent_pos"], np.float64), np.asarray(extras["agent_dir"], np.float64)
        return (_cells(pos), np.degrees(np.arctan2(direction[..., 1], direction[..., 0])),
                MAZE_HEADING_TOLERANCE)
    if all(k in extras for k in ("x", "z", "yaw")):
        xz = np.stack([np.asarray(extras["x"], np.float64), np.asarray(extras["z"], np.float64)], -1)
        return _cells(xz / MINECRAFT_CELL), np.asarray(extras["yaw"], np.float64), MINECRAFT_HEADING_TOLERANCE
    return None



def _cells(pos: np.ndarray) -> np.ndarray:
    known = np.isfinite(pos).all(-1, keepdims=True)
    return np.where(known, np.floor(np.where(known, pos, 0.0)), UNKNOWN_CELL).astype(np.int64)


def known_places(cells: np.ndarray, headings: np.ndarray) -> np.ndarray:
    """(..., T) bool: frames whose cell and heading are known."""
    return (cells != UNKNOWN_CELL).all(-1) & np.isfinite(headings)


def same_place(cells: np.ndarray, headings: np.ndarray, tolerance: float, queries: slice, keys: slice
               ) -> np.ndarray:
    """(..., Q, K) bool: frame ``queries[q]`` and frame ``keys[k]`` of a clip (cells (..., T, 2), headings
    (..., T) degrees) share a cell and a heading within ``tolerance`` degrees; unknown places match nothing."""
    known = known_places(cells, headings)
    same = (cells[..., queries, None, :] == cells[..., None, keys, :]).all(-1)
    turn = np.abs((headings[..., queries, None] - headings[..., None, keys] + 180.0) % 360.0 - 180.0)
    return same & (turn <= tolerance) & known[..., queries, None] & known[..., None, keys]


def revisit_mask(cells: np.ndarray, headings: np.ndarray, window: int, tolerance: float) -> np.ndarray:
    """``mask[t]`` for one clip (cells (T, 2), headings (T,) degrees): the cell and heading of frame
    ``t`` (within ``tolerance`` degrees) were seen at some frame ``j <= t - window``."""
    match = same_place(cells, headings, tolerance, slice(None), slice(None))  # (T, T)
    return np.tril(match, -window).any(-1)


def revisit_masks(extras: Mapping[str, np.ndarray], window: int) -> np.ndarray | None:
    """Revisit masks (N, T) of clips whose extras are (N, T, ...) arrays; None without positions."""
    found = places(extras)
    if found is None:
        return None
    cells, headings, tolerance = found
    return np.stack([revisit_mask(c, h, window, tolerance) for c, h in zip(cells, headings)])


def prefix_revisit_masks(extras: Mapping[str, np.ndarray], prefix: int, window: int
                         ) -> tuple[np.ndarray, np.ndarray] | None:
    """(revisit, new) masks (N, T - prefix) of the frames after a real prefix of clips with (N, T, ...) extras.

    Frame ``f >= prefix`` *revisits* when its place matches a prefix frame ``j < prefix - window``: one
    the memory ablation (which observes only the last ``window`` prefix frames) never saw, and outside
    the attention window of every dreamed frame; it is a *new place* when its place matches no prefix
    frame. Frames of unknown place are neither. None without positions."""
    found = places(extras)
    if found is None:
        return None
    cells, headings, tolerance = found
    match = same_place(cells, headings, tolerance, slice(prefix, None), slice(0, prefix))  # (N, H, P)
    new_place = known_places(cells, headings)[:, prefix:] & ~match.any(-1)
    return match[:, :, :max(prefix - window, 0)].any(-1), new_place
