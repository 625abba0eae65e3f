"""Discrete action sets shared by the collectors, the model and the dream envs.

The model always sees an action as an integer id in ``[0, num_actions)``; the id ``num_actions``
is reserved for "no action yet" (the first frame of an episode).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionSet:
    """A named discrete action set: ``names[i]`` describes action id ``i``."""

    name: str
    names: tuple[str, ...]

    @property
    def num_actions(self) -> int:
        return len(self.names)

    @property
    def null_action(self) -> int:
        """Id fed to the model before the first action of an episode."""
        return len(self.names)


MEMORY_MAZE = ActionSet(
    "memory-maze",
    ("noop", "forward", "turn_left", "turn_right", "forward_left", "forward_right"),
)

# TECO Minecraft's integer actions (0 is only used at t=0 in TECO data: no action).
MINECRAFT = ActionSet("minecraft", ("noop", "forward_jump", "turn_left_20", "turn_right_20"))

ACTION_SETS: dict[str, ActionSet] = {s.name: s for s in (MEMORY_MAZE, MINECRAFT)}


def get_action_set(name: str) -> ActionSet:
    try:
        return ACTION_SETS[name]
    except KeyError:
        raise ValueError(f"unknown action set {name!r}; known: {sorted(ACTION_SETS)}") from None
