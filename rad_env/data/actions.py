"""Discrete action sets shared by the collectors, the model and the dream envs.

The model always sees an action as an integer id in ``[0, num_actions)``; the id ``num_actions``
is reserved for "no action yet" (the first frame of an episode).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ActionSet:
    """A named discrete action set: ``names[i]`` describes action id ``i``."""

    name: str
    names: tuple[str, ...]
    turns: tuple[int, ...] = ()  # ids that turn the camera in place (left, right): a dream start's random spin

    @property
    def num_actions(self) -> int:
        return len(self.names)

    @property
    def null_action(self) -> int:
        """Id fed to the model before the first action of an episode."""
        return len(self.names)

    def ids(self, *names: str) -> tuple[int, ...]:
        """The ids of the named actions, in the order given (``ValueError`` names an unknown one)."""
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise ValueError(f"action set {self.name!r} has no action {unknown[0]!r}; it has {', '.join(self.names)}")
        return tuple(self.names.index(n) for n in names)


MEMORY_MAZE = ActionSet(
    "memory-maze",
    ("noop", "forward", "turn_left", "turn_right", "forward_left", "forward_right"),
    turns=(2, 3),
)

# TECO Minecraft's integer actions (0 is only used at t=0 in TECO data: no action).
MINECRAFT = ActionSet("minecraft", ("noop", "forward_jump", "turn_left_20", "turn_right_20"), turns=(2, 3))

# The RAD authors' Minecraft walker (MineRL): every combination of a move (none / forward / back), jump
# (no / yes) and a camera turn (none / yaw -20 degrees / yaw +20 degrees). Forward and back pressed
# together cancel (as in Minecraft) and map to "no move". id = 6 * move + 3 * jump + turn.
WALK_MOVES = ("", "forward", "back")
WALK_TURNS = ("", "left_20", "right_20")
MINECRAFT_WALK = ActionSet("minecraft-walk", tuple(
    "+".join(part for part in (move, "jump" if jump else "", turn) if part) or "noop"
    for move in WALK_MOVES for jump in (0, 1) for turn in WALK_TURNS), turns=(1, 2))


def walk_action_ids(vectors: np.ndarray) -> np.ndarray:
    """Native walker actions (N, 4) = [forward, back, jump, turn] (forward/back/jump 0 or 1, turn
    -1/0/+1 = yaw -20/0/+20 degrees) -> MINECRAFT_WALK ids (N,) int64. ``ValueError`` names the first
    row that is not of that form."""
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 4:
        raise ValueError(f"walker actions must be (N, 4) = [forward, back, jump, turn], got shape {v.shape}")
    binary = np.isin(v[:, :3], (0.0, 1.0)).all(1)
    turn_ok = np.isin(v[:, 3], (-1.0, 0.0, 1.0))
    bad = np.nonzero(~(binary & turn_ok))[0]
    if len(bad):
        raise ValueError(f"row {bad[0]} = {v[bad[0]].tolist()}: forward, back and jump must be 0 or 1 "
                         "and turn -1, 0 or +1")
    move = v[:, 0] - v[:, 1]  # +1 forward, -1 back, 0 none (or both pressed)
    move_index = np.where(move > 0, 1, np.where(move < 0, 2, 0))
    turn_index = np.where(v[:, 3] < 0, 1, np.where(v[:, 3] > 0, 2, 0))
    return (6 * move_index + 3 * v[:, 2].astype(np.int64) + turn_index).astype(np.int64)


def walk_action_vector(action_id: int) -> tuple[int, int, int, int]:
    """A MINECRAFT_WALK id -> (forward, back, jump, turn), the inverse of :func:`walk_action_ids`."""
    if not 0 <= int(action_id) < MINECRAFT_WALK.num_actions:
        raise ValueError(f"invalid minecraft-walk action id {action_id}; expected 0..{MINECRAFT_WALK.num_actions - 1}")
    move, rest = divmod(int(action_id), 6)
    jump, turn = divmod(rest, 3)
    return int(move == 1), int(move == 2), jump, (0, -1, 1)[turn]


ACTION_SETS: dict[str, ActionSet] = {s.name: s for s in (MEMORY_MAZE, MINECRAFT, MINECRAFT_WALK)}


def get_action_set(name: str) -> ActionSet:
    try:
        return ACTION_SETS[name]
    except KeyError:
        raise ValueError(f"unknown action set {name!r}; known: {sorted(ACTION_SETS)}") from None
