"""Data-collection policies.

Every policy has ``reset(info, seed)`` (called after ``env.reset``; ``seed`` re-seeds its random
generator so an episode is reproducible) and ``__call__(obs, info) -> int`` (an action id).

- :class:`RandomPolicy`: uniform over ``n`` actions, with optional action repeat / sticky actions.
- :class:`WalkerPolicy`: Minecraft (``minecraft-walk`` ids): the RAD authors' scripted walker.
- :class:`TargetPolicy`: Memory Maze only. Walks to the current target (from the global
  observables) with action noise, sometimes to a random cell instead: data with rewards.
- :class:`ExplorePolicy`: Memory Maze only. Walks along BFS shortest paths to random free cells of
  the maze with action noise (like the Memory Maze offline dataset), so places get revisited.
- :class:`RetracePolicy`: Memory Maze only. Explores, then walks the explored cells again in the same
  order (same places, same heading): held-out sets for memory evaluation.
- :class:`AgentPolicy`: a trained Stable-Baselines3 agent (``agents.train_ppo``'s ``.zip``) acting on the
  frames: data of the agent's own behaviour, so a world model (or its reward head) retrained on it learns
  what the real env does where the agent goes, e.g. where it exploited the dream.

Memory Maze geometry (checked by experiment against the real env, see tests/test_collect_policies.py):
``info["agent_pos"] = (x, y)`` in grid units, cell ``(x, y)`` spans ``[x, x+1) x [y, y+1)`` with
its centre at ``(x + 0.5, y + 0.5)``; ``maze_layout[y, x] == 1`` means the cell is free (0 = wall);
``agent_dir = (cos a, sin a)`` and ``turn_left`` increases the angle ``a`` (counter-clockwise).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from rad_env.data.actions import MEMORY_MAZE

NOOP, FORWARD, TURN_LEFT, TURN_RIGHT, FORWARD_LEFT, FORWARD_RIGHT = MEMORY_MAZE.ids(
    "noop", "forward", "turn_left", "turn_right", "forward_left", "forward_right")

Cell = tuple[int, int]  # (x, y)


class RandomPolicy:
    """Uniformly random actions in ``[0, num_actions)``.

    ``repeat``: every sampled action is held for this many steps. ``sticky``: after that, the
    previous action is kept with this probability instead of sampling a new one.
    ``probs``: optional non-uniform action probabilities.
    """

    def __init__(self, num_actions: int = 6, *, repeat: int = 1, sticky: float = 0.0,
                 probs: list[float] | None = None, seed: int | None = None) -> None:
        if num_actions < 1:
            raise ValueError(f"num_actions must be >= 1, got {num_actions}")
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        if not 0.0 <= sticky < 1.0:
            raise ValueError(f"sticky must lie in [0, 1), got {sticky}")
        if probs is not None:
            probs = list(np.asarray(probs, np.float64) / np.sum(probs))
            if len(probs) != num_actions:
                raise ValueError(f"probs has {len(probs)} entries for {num_actions} actions")
        self.num_actions, self.repeat, self.sticky, self.probs = num_actions, repeat, sticky, probs
        self.rng = np.random.default_rng(seed)
        self._action: int | None = None
        self._left = 0

    def reset(self, info: dict[str, Any] | None = None, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._action, self._left = None, 0

    def __call__(self, obs: Any = None, info: dict[str, Any] | None = None) -> int:
        if self._action is not None:
            if self._left > 0:
                self._left -= 1
                return self._action
            if self.sticky and self.rng.random() < self.sticky:
                return self._action
        self._action = int(self.rng.choice(self.num_actions, p=self.probs))
        self._left = self.repeat - 1
        return self._action


class WalkerPolicy:
    """The RAD authors' Minecraft walker: every ``repeat`` steps it draws forward (probability
    ``forward``, else no move), a 20-degree turn left or right (``turn`` each) and a jump (``jump``),
    and holds that action. Returns ``minecraft-walk`` ids (:data:`rad_env.data.MINECRAFT_WALK`)."""

    def __init__(self, *, forward: float = 0.95, turn: float = 0.25, jump: float = 0.2, repeat: int = 5,
                 seed: int | None = None) -> None:
        for name, p in (("forward", forward), ("turn", turn), ("jump", jump)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"walker {name} probability must lie in [0, 1], got {p}")
        if 2 * turn > 1.0:
            raise ValueError(f"walker turn probability is per side and must be <= 0.5, got {turn}")
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        self.forward, self.turn, self.jump, self.repeat = forward, turn, jump, repeat
        self.rng = np.random.default_rng(seed)
        self._action, self._count = 0, 0

    def reset(self, info: dict[str, Any] | None = None, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._count = 0

    def __call__(self, obs: Any = None, info: dict[str, Any] | None = None) -> int:
        from rad_env.data import walk_action_ids

        if self._count % self.repeat == 0:
            forward = int(self.rng.random() < self.forward)
            turn = int(self.rng.choice([-1, 0, 1], p=[self.turn, 1 - 2 * self.turn, self.turn]))
            jump = int(self.rng.random() < self.jump)
            self._action = int(walk_action_ids([[forward, 0, jump, turn]])[0])
        self._count += 1
        return self._action


def bfs_path(free: np.ndarray, start: Cell, goal: Cell) -> list[Cell] | None:
    """Shortest 4-connected path ``[start, ..., goal]`` over cells with ``free[y, x]``, or None."""
    height, width = free.shape
    if start == goal:
        return [start]
    parent: dict[Cell, Cell | None] = {start: None}
    queue = deque([start])
    while queue:
        x, y = queue.popleft()
        for nxt in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            nx, ny = nxt
            if 0 <= nx < width and 0 <= ny < height and free[ny, nx] and nxt not in parent:
                parent[nxt] = (x, y)
                if nxt == goal:
                    path = [nxt]
                    while parent[path[-1]] is not None:
                        path.append(parent[path[-1]])  # type: ignore[arg-type]
                    return path[::-1]
                queue.append(nxt)
    return None


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


@dataclass
class _Bump:
    """A walk into a wall: blocked forward presses still to make, steps so far, the last position."""

    pushes_left: int
    steps: int
    last: np.ndarray


class ExplorePolicy:
    """Scripted Memory Maze explorer: go to a random free cell along the BFS shortest path.

    Each step it plans from the agent's current cell to the goal cell, aims at the centre of the
    farthest cell of the path that lies on a straight line from the current cell (the segment stays
    inside free cells), and turns toward it: ``turn_left``/``turn_right`` when the heading error is
    above ``turn_deg``, ``forward_left``/``forward_right`` above ``fine_deg``, else ``forward``.
    With probability ``noise`` the action is uniformly random instead. A new goal is drawn when the
    goal cell is reached or when the agent has not entered a new cell for ``stuck_steps`` steps.

    ``look_around``: probability per step of stopping to look around: ``k`` turns one way (``k``
    uniform in ``look_turns``), then ``k`` turns back, without action noise. The view leaves and comes
    back (18.4 degrees per turn step), which a world model must remember to reproduce: recorded data
    without it almost never turns more than 90 degrees away and back to the same view.

    ``bump``: probability per step of walking straight ahead into a wall until ``k`` forward presses were
    blocked (``k`` uniform in ``bump_pushes``; at most ``bump_max_steps`` steps in all), without action
    noise. The scripted walks otherwise almost never walk into a wall (3 of 1869 forward presses
    of the held-out explore walks went nowhere; 26% of those of ``bump=0.05`` walks), while an agent does it
    all the time; a world model trained without it dreams that forward always moves on.

    Needs ``info["maze_layout"]`` at reset and ``info["agent_pos"]``/``info["agent_dir"]`` every step.
    """

    def __init__(self, *, noise: float = 0.15, stuck_steps: int = 40, turn_deg: float = 35.0,
                 fine_deg: float = 8.0, look_around: float = 0.0, look_turns: tuple[int, int] = (3, 10),
                 bump: float = 0.0, bump_pushes: tuple[int, int] = (2, 8), bump_max_steps: int = 40,
                 seed: int | None = None) -> None:
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must lie in [0, 1], got {noise}")
        if not 0.0 <= look_around <= 1.0:
            raise ValueError(f"look_around must lie in [0, 1], got {look_around}")
        if not 1 <= look_turns[0] <= look_turns[1]:
            raise ValueError(f"look_turns must be (min, max) with 1 <= min <= max, got {look_turns}")
        if not 0.0 <= bump <= 1.0:
            raise ValueError(f"bump must lie in [0, 1], got {bump}")
        if not 1 <= bump_pushes[0] <= bump_pushes[1]:
            raise ValueError(f"bump_pushes must be (min, max) with 1 <= min <= max, got {bump_pushes}")
        self.bump, self.bump_max_steps = bump, bump_max_steps
        self.bump_pushes = (int(bump_pushes[0]), int(bump_pushes[1]))
        self._bump: _Bump | None = None  # a walk into a wall in progress
        self.noise, self.stuck_steps = noise, stuck_steps
        self.look_around, self.look_turns = look_around, (int(look_turns[0]), int(look_turns[1]))
        self._scan: list[int] = []  # the rest of a look-around in progress
        self.turn_rad, self.fine_rad = math.radians(turn_deg), math.radians(fine_deg)
        self.rng = np.random.default_rng(seed)
        self.free: np.ndarray | None = None
        self.goal: Cell | None = None
        self.goals_reached = self.goals_abandoned = 0

    # -- episode state -------------------------------------------------------------------
    def reset(self, info: dict[str, Any] | None = None, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        if info is None or "maze_layout" not in info:
            raise ValueError("ExplorePolicy needs info['maze_layout'] from env.reset() (Memory Maze only)")
        self.free = np.asarray(info["maze_layout"]).astype(bool)
        if not self.free.any():
            raise ValueError("maze_layout has no free cell")
        self._free_cells = [(int(x), int(y)) for y, x in zip(*np.nonzero(self.free))]
        self.goal, self.goals_reached, self.goals_abandoned = None, 0, 0
        self._last_cell: Cell | None = None
        self._since_progress = 0
        self._scan = []
        self._bump = None

    def cell_of(self, pos) -> Cell:
        """The free cell the agent is in (nearest free cell if rounding puts it in a wall)."""
        assert self.free is not None
        height, width = self.free.shape
        x = min(max(int(math.floor(float(pos[0]))), 0), width - 1)
        y = min(max(int(math.floor(float(pos[1]))), 0), height - 1)
        if self.free[y, x]:
            return x, y
        return min(self._free_cells, key=lambda c: (c[0] + 0.5 - pos[0]) ** 2 + (c[1] + 0.5 - pos[1]) ** 2)

    def _new_goal(self, cell: Cell) -> None:
        options = [c for c in self._free_cells if c != cell] or [cell]
        self.goal = options[int(self.rng.integers(len(options)))]
        self._since_progress = 0

    def waypoint(self, cell: Cell) -> tuple[float, float] | None:
        """Centre of the cell to head for (the farthest straight-line cell along the path)."""
        assert self.free is not None and self.goal is not None
        path = bfs_path(self.free, cell, self.goal)
        if path is None or len(path) < 2:
            return None
        step = (path[1][0] - cell[0], path[1][1] - cell[1])
        target = path[1]
        for nxt in path[2:]:
            if (nxt[0] - target[0], nxt[1] - target[1]) != step:
                break
            target = nxt
        return target[0] + 0.5, target[1] + 0.5

    # -- acting --------------------------------------------------------------------------
    def __call__(self, obs: Any, info: dict[str, Any]) -> int:
        if self.free is None:
            raise RuntimeError("call reset(info) with the env's reset info first")
        pos, direction = info["agent_pos"], info["agent_dir"]
        cell = self.cell_of(pos)
        if cell != self._last_cell:
            self._last_cell, self._since_progress = cell, 0
        else:
            self._since_progress += 1
        if self.goal is None:
            self._new_goal(cell)
        elif self._since_progress > self.stuck_steps:
            self.goals_abandoned += 1
            self._new_goal(cell)
        elif cell == self.goal:
            self.goals_reached += 1
            self._new_goal(cell)
        noisy = self.rng.random() < self.noise
        random_action = int(self.rng.integers(6))  # drawn every step: noise does not shift the stream
        if self.look_around and not self._scan and self.rng.random() < self.look_around:
            k = int(self.rng.integers(self.look_turns[0], self.look_turns[1] + 1))
            away = TURN_LEFT if self.rng.random() < 0.5 else TURN_RIGHT
            self._scan = [away] * k + [TURN_LEFT + TURN_RIGHT - away] * k
        if self._scan:
            return self._scan.pop(0)
        if self._bumping(pos):
            return FORWARD
        if noisy:
            return random_action
        target = self.waypoint(cell)
        if target is None:
            return random_action
        return self.steer(pos, direction, target)

    def _bumping(self, pos) -> bool:
        """Whether this step belongs to a walk into a wall (``bump``): starts one with probability ``bump``."""
        pos = np.asarray(pos, np.float64)[:2]
        bump = self._bump
        if bump is None:
            if not (self.bump and self.rng.random() < self.bump):
                return False
            pushes = int(self.rng.integers(self.bump_pushes[0], self.bump_pushes[1] + 1))
            self._bump = _Bump(pushes_left=pushes, steps=1, last=pos)
            return True
        blocked = float(np.hypot(*(pos - bump.last))) < 0.02  # a free step moves ~0.25 cells
        bump.last, bump.steps = pos, bump.steps + 1
        if blocked:
            bump.pushes_left -= 1
        if bump.pushes_left <= 0 or bump.steps > self.bump_max_steps:
            self._bump = None
            return False
        return True

    def steer(self, pos, direction, target: tuple[float, float]) -> int:
        """The action that turns toward / walks to the point ``target`` (x, y)."""
        heading = math.atan2(float(direction[1]), float(direction[0]))
        error = _wrap(math.atan2(target[1] - float(pos[1]), target[0] - float(pos[0])) - heading)
        if abs(error) > self.turn_rad:
            return TURN_LEFT if error > 0 else TURN_RIGHT
        if abs(error) > self.fine_rad:
            return FORWARD_LEFT if error > 0 else FORWARD_RIGHT
        return FORWARD


class TargetPolicy(ExplorePolicy):
    """Memory Maze target seeker: walks (like :class:`ExplorePolicy`, with its action noise and
    look-arounds) to the current target, the object whose colour is the image border, read from the
    global observable ``info["target_pos"]``; the env then pays +1 and names the next target. With
    probability ``wander`` a goal is a random free cell instead (exploration mixed in)."""

    def __init__(self, *, wander: float = 0.2, **kwargs: Any) -> None:
        if not 0.0 <= wander <= 1.0:
            raise ValueError(f"wander must lie in [0, 1], got {wander}")
        super().__init__(**kwargs)
        self.wander = wander
        self._target: Cell | None = None
        self._wandering = False

    def reset(self, info: dict[str, Any] | None = None, seed: int | None = None) -> None:
        super().reset(info, seed)
        if info is None or "target_pos" not in info:
            raise ValueError("TargetPolicy needs info['target_pos'] (Memory Maze's global observables)")
        self._target, self._wandering = None, False

    def _new_goal(self, cell: Cell) -> None:
        self._wandering = self._target is None or self.rng.random() < self.wander
        if self._wandering or self._target == cell:
            super()._new_goal(cell)
        else:
            self.goal, self._since_progress = self._target, 0

    def __call__(self, obs: Any, info: dict[str, Any]) -> int:
        target = self.cell_of(info["target_pos"])
        if target != self._target:  # a new target (or the first): head for it unless wandering
            self._target = target
            if not self._wandering:
                self.goal = None
        if not self._wandering and not self._scan and self.cell_of(info["agent_pos"]) == target:
            # in the target's cell: walk into the object itself (the env pays on touching it)
            noisy = self.rng.random() < self.noise
            random_action = int(self.rng.integers(6))
            return random_action if noisy else self.steer(info["agent_pos"], info["agent_dir"], info["target_pos"])
        return super().__call__(obs, info)


class RetracePolicy(ExplorePolicy):
    """Memory Maze: explore, then retrace the explored route in the same order and direction.

    Phase 1 (the first ``explore_steps`` calls): exactly :class:`ExplorePolicy` (same actions for the same
    seed), and records ``route``, the cells the agent enters (a cell is appended when it differs from the
    last one). Phase 2: walks back to ``route[0]`` along BFS paths, then heads for the recorded cells in
    order (goal = the next cell of ``route``; when the agent is in one of the next ``1 + skip_ahead``
    cells it continues after that one, so cells it cuts past are skipped), with action noise
    ``retrace_noise``, no look-arounds (a look-around in progress is dropped) and no random goals. The
    agent passes the prefix's places in the prefix's direction, i.e. facing the same way, so a world
    model that saw the prefix can only reproduce the continuation from memory. When the route is done
    it loops: back to ``route[0]`` and the same route again (``laps`` counts the completed ones). A goal
    not reached within ``stuck_steps`` steps without entering a new cell is skipped.
    """

    def __init__(self, *, explore_steps: int = 250, retrace_noise: float = 0.05, skip_ahead: int = 2,
                 **kwargs: Any) -> None:
        if isinstance(explore_steps, bool) or not isinstance(explore_steps, (int, np.integer)) or explore_steps < 1:
            raise ValueError(f"explore_steps must be an integer >= 1, got {explore_steps!r}")
        if not 0.0 <= retrace_noise <= 1.0:
            raise ValueError(f"retrace_noise must lie in [0, 1], got {retrace_noise}")
        if skip_ahead < 0:
            raise ValueError(f"skip_ahead must be >= 0, got {skip_ahead}")
        super().__init__(**kwargs)
        self.explore_steps, self.retrace_noise, self.skip_ahead = int(explore_steps), retrace_noise, int(skip_ahead)
        self._explore_noise, self._explore_look_around = self.noise, self.look_around
        self._clear_phase()

    def _clear_phase(self) -> None:
        self.noise, self.look_around = self._explore_noise, self._explore_look_around
        self.phase = "explore"
        self.route: list[Cell] = []
        self.laps = 0
        self._steps = 0
        self._index = 0  # the route cell to reach next (phase 2)

    def reset(self, info: dict[str, Any] | None = None, seed: int | None = None) -> None:
        super().reset(info, seed)
        self._clear_phase()

    def _start_retrace(self) -> None:
        self.phase = "retrace"
        self.noise, self.look_around, self._scan = self.retrace_noise, 0.0, []
        self._index, self._since_progress = 0, 0

    def _advance(self, cell: Cell) -> None:
        """Move ``_index`` past ``cell`` if it is the next route cell (or, once on the route, one of the
        ``skip_ahead`` after it); wraps to a new lap at the route's end."""
        n = len(self.route)
        window = 1 if self._index == 0 else 1 + self.skip_ahead  # route[0] itself must be reached
        for k in range(min(window, n - self._index)):
            if self.route[self._index + k] == cell:
                self._index += k + 1
                self._since_progress = 0
                if self._index >= n:
                    self._index, self.laps = 0, self.laps + 1
                return

    def _new_goal(self, cell: Cell) -> None:
        if self.phase == "explore":
            super()._new_goal(cell)
            return
        if self.goal is not None and cell != self.goal:  # stuck: skip this route cell
            self._index = (self._index + 1) % len(self.route)
            self.laps += self._index == 0
        self.goal, self._since_progress = self.route[self._index], 0

    def __call__(self, obs: Any, info: dict[str, Any]) -> int:
        if self.free is None:
            raise RuntimeError("call reset(info) with the env's reset info first")
        cell = self.cell_of(info["agent_pos"])
        if self.phase == "explore" and self._steps >= self.explore_steps:
            self._start_retrace()
        self._steps += 1
        if self.phase == "explore":
            if not self.route or self.route[-1] != cell:
                self.route.append(cell)
            return super().__call__(obs, info)
        if cell != self._last_cell:
            self._advance(cell)
        if len(self.route) > 1 and self.route[self._index] == cell:  # (a one-cell route: stay there)
            self._advance(cell)
        self.goal = self.route[self._index]
        return super().__call__(obs, info)


class AgentPolicy:
    """The actions of a saved Stable-Baselines3 PPO agent, sampled from its policy (``deterministic``: the
    greedy action) given the frame (its last frames, for an agent trained on stacked frames); ``reset(seed=...)``
    seeds the sampling and starts a new episode, so an episode is reproducible."""

    def __init__(self, agent: str, num_actions: int, *, deterministic: bool = False, seed: int | None = None) -> None:
        from stable_baselines3 import PPO

        try:
            self.model = PPO.load(agent, device="cpu")
        except (OSError, ValueError, KeyError) as exc:  # missing file, not an SB3 zip
            raise ValueError(f"--agent {agent}: cannot load a Stable-Baselines3 PPO agent ({exc})") from None
        n = getattr(self.model.action_space, "n", None)
        if n != num_actions:
            raise ValueError(f"--agent {agent} acts in {self.model.action_space}, the env has {num_actions} actions")
        from agents.frame_stack import FrameFeeder

        self.deterministic = deterministic
        self.feeder, self.fresh = FrameFeeder(self.model), True  # stacked frames, for an agent that reads them
        self.reset(seed=seed)

    def reset(self, info: dict[str, Any] | None = None, seed: int | None = None) -> None:
        self.fresh = True
        if seed is not None:
            self.model.set_random_seed(seed)

    def __call__(self, obs: Any, info: dict[str, Any] | None = None) -> int:
        frames = np.asarray(obs)[None]
        seen = self.feeder.start(frames) if self.fresh else self.feeder.next(frames)
        self.fresh = False
        action, _ = self.model.predict(seen, deterministic=self.deterministic)
        return int(np.asarray(action).reshape(-1)[0])


def make_policy(kind: str, num_actions: int, *, seed: int | None = None, **kwargs: Any):
    """``kind`` is ``random``, ``explore``, ``target``, ``retrace``, ``walker`` or ``agent``; ``kwargs`` go
    to the policy's constructor."""
    if kind == "random":
        return RandomPolicy(num_actions, seed=seed, **kwargs)
    if kind == "explore":
        return ExplorePolicy(seed=seed, **kwargs)
    if kind == "target":
        return TargetPolicy(seed=seed, **kwargs)
    if kind == "retrace":
        return RetracePolicy(seed=seed, **kwargs)
    if kind == "walker":
        return WalkerPolicy(seed=seed, **kwargs)
    if kind == "agent":
        return AgentPolicy(num_actions=num_actions, seed=seed, **kwargs)
    raise ValueError(f"unknown policy {kind!r}; choose 'random', 'explore', 'target', 'retrace', 'walker' or 'agent'")
