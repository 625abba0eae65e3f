"""The HDF5 episode schema: one schema for every source (recorders and importers).

A file holds ``/episodes/<id>/`` groups and file-level attributes (:class:`FileMeta`).
See DESIGN.md for the table of datasets.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import UserError

SCHEMA_VERSION = 1
COLLECTOR_VERSION = "rad-env-0.1.0"
EPISODES_GROUP = "episodes"

#: Datasets every episode group must hold.
REQUIRED_KEYS = ("obs", "action_id", "action", "reward", "terminated", "truncated")
#: Per-step datasets, shape (T, ...).
STEP_KEYS = ("action_id", "reward", "terminated", "truncated")


class SchemaError(UserError, ValueError):
    """A file or episode does not follow the rad-env HDF5 schema."""


@dataclass
class FileMeta:
    """File-level attributes: where the episodes came from and how to read their actions."""

    source: str
    action_set: str
    num_actions: int
    frame_shape: tuple[int, int, int]
    action_space: str = ""  # JSON description of the native action space
    seed: int = -1
    schema_version: int = SCHEMA_VERSION
    collector_version: str = COLLECTOR_VERSION

    def to_attrs(self) -> dict[str, Any]:
        attrs = asdict(self)
        attrs["frame_shape"] = np.asarray(self.frame_shape, dtype=np.int64)
        return attrs

    @classmethod
    def from_attrs(cls, attrs: Any, where: str) -> "FileMeta":
        missing = [k for k in ("source", "action_set", "num_actions", "frame_shape", "schema_version")
                   if k not in attrs]
        if missing:
            raise SchemaError(f"{where}: missing file attributes {missing}; not a rad-env episode file")
        version = int(attrs["schema_version"])
        if version != SCHEMA_VERSION:
            raise SchemaError(f"{where}: schema_version {version} is not supported (expected {SCHEMA_VERSION})")
        frame_shape = tuple(int(x) for x in np.asarray(attrs["frame_shape"]).reshape(-1))
        if len(frame_shape) != 3 or frame_shape[2] != 3:
            raise SchemaError(f"{where}: frame_shape {frame_shape} must be (H, W, 3)")

        def text(key: str, default: str = "") -> str:
            value = attrs.get(key, default)
            return value.decode() if isinstance(value, bytes) else str(value)

        return cls(
            source=text("source"),
            action_set=text("action_set"),
            num_actions=int(attrs["num_actions"]),
            frame_shape=frame_shape,  # type: ignore[arg-type]
            action_space=text("action_space"),
            seed=int(attrs.get("seed", -1)),
            schema_version=version,
            collector_version=text("collector_version"),
        )

    def compatible_with(self, other: "FileMeta") -> bool:
        """Episodes of both files can be trained on together."""
        return (self.action_set, self.num_actions, tuple(self.frame_shape)) == (
            other.action_set, other.num_actions, tuple(other.frame_shape))


@dataclass
class Episode:
    """One episode in memory, before writing. ``T`` steps, ``T + 1`` observations.

    ``action`` is the env's native form: an array ``(T, ...)`` or a dict of arrays (MineRL).
    ``extras`` are optional arrays such as agent_pos ``(T+1, 2)`` or maze_layout ``(9, 9)``.
    """

    obs: np.ndarray
    action_id: np.ndarray
    action: np.ndarray | dict[str, np.ndarray]
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    seed: int = -1

    @property
    def length(self) -> int:
        return int(len(self.action_id))

    def validate(self, meta: FileMeta, where: str = "episode") -> None:
        """Raise :class:`SchemaError` naming the first problem found."""
        arrays = {key: np.asarray(getattr(self, key)) for key in ("obs", *STEP_KEYS)}
        steps = check_layout(arrays, meta, where)
        action_id = arrays["action_id"]
        if action_id.size and (action_id.min() < 0 or action_id.max() >= meta.num_actions):
            raise SchemaError(f"{where}: action_id values must lie in [0, {meta.num_actions}), "
                              f"got [{action_id.min()}, {action_id.max()}]")
        native = self.action if isinstance(self.action, dict) else {"action": self.action}
        for key, value in native.items():
            if np.asarray(value).shape[:1] != (steps,):
                raise SchemaError(f"{where}: native action {key!r} has {np.asarray(value).shape[:1]} steps, expected {steps}")
        if not np.all(np.isfinite(np.asarray(self.reward, dtype=np.float64))):
            raise SchemaError(f"{where}: reward has non-finite values")


def check_layout(arrays: Mapping[str, Any], meta: FileMeta, where: str) -> int:
    """Check obs and per-step datasets (numpy arrays or h5py datasets: anything with shape and
    dtype) against ``meta``; returns the number of steps T."""
    obs = arrays["obs"]
    if obs.dtype != np.uint8:
        raise SchemaError(f"{where}: obs dtype {obs.dtype}, expected uint8")
    if len(obs.shape) != 4 or tuple(obs.shape[1:]) != tuple(meta.frame_shape):
        raise SchemaError(f"{where}: obs shape {obs.shape}, expected (T+1, {', '.join(map(str, meta.frame_shape))})")
    steps = obs.shape[0] - 1
    if steps < 1:
        raise SchemaError(f"{where}: an episode needs at least 1 step, got {obs.shape[0]} observation(s)")
    for key in STEP_KEYS:
        shape = arrays[key].shape
        if len(shape) != 1 or shape[0] != steps:
            raise SchemaError(f"{where}: {key} shape {shape}, expected ({steps},) for {steps + 1} observations")
    if not np.issubdtype(arrays["action_id"].dtype, np.integer):
        raise SchemaError(f"{where}: action_id dtype {arrays['action_id'].dtype}, expected an integer type")
    return steps


def action_space_json(description: dict[str, Any]) -> str:
    return json.dumps(description, sort_keys=True)
