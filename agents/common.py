"""Pieces shared by the agent scripts: a random policy, evaluation, videos. (The dream and real envs
come from :mod:`rad_env.envs.factory`.)"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rad_env.data.actions import MEMORY_MAZE
from rad_env.envs.specs import MEMORY_MAZE_SPEC

from .frame_stack import FrameFeeder, stack_for

#: Steps of a full real Memory Maze 9x9 episode.
REAL_EPISODE_STEPS = MEMORY_MAZE_SPEC.max_episode_steps


# ---------------------------------------------------------------------------------------------
# Policies


class RandomAgent:
    """Uniformly random actions, with SB3's ``predict`` interface (a baseline)."""

    def __init__(self, num_actions: int, seed: int | None = None) -> None:
        self.num_actions = num_actions
        self.rng = np.random.default_rng(seed)

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        obs = np.asarray(observation)
        if obs.ndim == 4:  # a batch of images
            return self.rng.integers(0, self.num_actions, len(obs)), state
        return np.asarray(self.rng.integers(0, self.num_actions)), state


class WallTurnAgent:
    """A scripted reference walker that sees only its frames (SB3's ``predict`` interface): it presses
    forward, and when a press leaves the view all but unchanged (mean change under ``still`` grey levels: a
    wall, real or dreamed), it turns one way, chosen at random, for 2-6 steps. It is the habit a dream-trained
    agent needs first (not standing at walls), with no sense of where targets are. Memory Maze's action ids."""

    (FORWARD,), TURNS = MEMORY_MAZE.ids("forward"), MEMORY_MAZE.turns

    def __init__(self, seed: int | None = None, still: float = 2.0) -> None:
        self.rng = np.random.default_rng(seed)
        self.still = still
        self.previous: np.ndarray | None = None
        self.actions = self.turning = self.turn = np.zeros(0, np.int64)

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        obs = np.asarray(observation, np.float32)
        single = obs.ndim == 3
        obs = obs[None] if single else obs
        n = len(obs)
        if self.previous is None or len(self.previous) != n:
            self.previous, self.actions = obs, np.zeros(n, np.int64)
            self.turning, self.turn = np.zeros(n, np.int64), np.full(n, self.TURNS[0])
        fresh = np.zeros(n, bool) if episode_start is None else np.asarray(episode_start, bool).reshape(n)
        change = np.abs(obs - self.previous).mean(axis=(1, 2, 3))
        blocked = (self.actions == self.FORWARD) & (change < self.still) & ~fresh
        self.turning = np.where(fresh, 0, np.maximum(self.turning - 1, 0))
        count = int(blocked.sum())
        self.turning[blocked] = self.rng.integers(2, 7, count)
        self.turn[blocked] = self.rng.choice(self.TURNS, count)
        self.actions = np.where(self.turning > 0, self.turn, self.FORWARD)
        self.previous = obs
        return (np.asarray(self.actions[0]) if single else self.actions.copy()), state


class TargetSeekerAgent(WallTurnAgent):
    """The wall-turner (:class:`WallTurnAgent`) that also goes for the target when it sees it: a scripted
    reference for what a policy without memory, reading only its frames, earns by knowing the task. Memory
    Maze draws the target's colour as the frame's 2-pixel border; pixels of about that colour (within ``tol``
    of the border's mean, RGB) below the horizon, in columns where the colour does not also show above it (a
    ball on the floor, not a wall of that colour), are the target. When at least ``min_pixels`` show and no
    wall turn is under way, it steers toward their centroid: forward when it is near the middle, forward-left
    or -right when off it, a turn in place when far off."""

    FORWARD_LEFT, FORWARD_RIGHT = MEMORY_MAZE.ids("forward_left", "forward_right")

    def __init__(self, seed: int | None = None, still: float = 2.0, tol: float = 40.0, min_pixels: int = 3) -> None:
        super().__init__(seed=seed, still=still)
        self.tol, self.min_pixels = tol, min_pixels

    def target_columns(self, frames: np.ndarray) -> list[np.ndarray]:
        """Per frame (N, H, W, 3): the image columns of the target's pixels (empty where none is seen)."""
        size, margin = frames.shape[1], 4
        horizon = size // 2 - margin  # row of the horizon inside the frame's margin
        inner = frames[:, margin:-margin, margin:-margin].astype(np.float32)
        border = frames[:, 0, :, :].astype(np.float32).mean(axis=1)
        near = np.linalg.norm(inner - border[:, None, None], axis=-1) < self.tol
        columns = []
        for mask in near:
            wall = mask[:horizon - 4].any(axis=0)
            ball = mask[horizon - 2:] & ~wall
            xs = np.nonzero(ball)[1]
            columns.append(xs + margin if len(xs) >= self.min_pixels else xs[:0])
        return columns

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        actions, state = super().predict(observation, state, episode_start, deterministic)
        obs = np.asarray(observation)
        single = obs.ndim == 3
        obs = obs[None] if single else obs
        actions = np.atleast_1d(actions).copy()
        middle = (obs.shape[2] - 1) / 2
        for i, xs in enumerate(self.target_columns(obs)):
            if len(xs) and self.turning[i] == 0:
                off = float(xs.mean()) - middle
                if abs(off) < obs.shape[2] / 10:
                    actions[i] = self.FORWARD
                elif abs(off) < obs.shape[2] / 4:
                    actions[i] = self.FORWARD_LEFT if off < 0 else self.FORWARD_RIGHT
                else:
                    actions[i] = self.TURNS[0] if off < 0 else self.TURNS[1]
        self.actions = actions.copy()
        return (np.asarray(actions[0]) if single else actions), state


# ---------------------------------------------------------------------------------------------
# Evaluation


@dataclass
class EvalResult:
    policy: str
    env: str
    episodes: int
    mean_return: float
    std_return: float
    mean_length: float
    std_length: float
    max_steps: int
    seconds: float
    steps_per_s: float
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(agent, venv, episodes: int, *, policy: str, env: str, max_steps: int, seed: int = 0,
             deterministic: bool = False) -> EvalResult:
    """Run ``episodes`` episodes of ``agent`` in ``venv`` (SB3 ``evaluate_policy``; frames stacked as the agent
    reads them) and summarise."""
    from stable_baselines3.common.evaluation import evaluate_policy

    venv = stack_for(agent, venv)
    venv.seed(seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Monitor.*")
        returns, lengths = evaluate_policy(agent, venv, n_eval_episodes=episodes, deterministic=deterministic,
                                           return_episode_rewards=True, warn=False)
    seconds = time.perf_counter() - start
    returns_a, lengths_a = np.asarray(returns, float), np.asarray(lengths, float)
    return EvalResult(policy=policy, env=env, episodes=len(returns), mean_return=float(returns_a.mean()),
                      std_return=float(returns_a.std()), mean_length=float(lengths_a.mean()),
                      std_length=float(lengths_a.std()), max_steps=max_steps, seconds=seconds,
                      steps_per_s=float(lengths_a.sum() / max(seconds, 1e-9)),
                      returns=[float(r) for r in returns], lengths=[int(n) for n in lengths])


def format_results(results: list[EvalResult]) -> str:
    """A plain-text table of evaluation results."""
    header = f"{'policy':<10}{'env':<8}{'episodes':>9}{'return mean':>13}{'± std':>9}{'length mean':>13}" \
             f"{'± std':>9}{'max steps':>11}{'env steps/s':>13}"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.policy:<10}{r.env:<8}{r.episodes:>9}{r.mean_return:>13.3f}{r.std_return:>9.3f}"
                     f"{r.mean_length:>13.1f}{r.std_length:>9.1f}{r.max_steps:>11}{r.steps_per_s:>13.1f}")
    return "\n".join(lines)


def record_episode(agent, env: gym.Env, seed: int, deterministic: bool = False,
                   max_steps: int | None = None) -> tuple[np.ndarray, float]:
    """Frames ``(T + 1, H, W, 3)`` and return of one episode of ``agent`` in ``env`` (fed stacked frames when it
    reads them)."""
    feeder = FrameFeeder(agent)
    obs, _ = env.reset(seed=seed)
    frames, total, seen = [obs], 0.0, feeder.start(obs[None])
    while max_steps is None or len(frames) <= max_steps:
        action, _ = agent.predict(seen, deterministic=deterministic)
        obs, reward, terminated, truncated, _ = env.step(int(np.asarray(action).reshape(())))
        frames.append(obs)
        total += float(reward)
        if terminated or truncated:
            break
        seen = feeder.next(obs[None])
    return np.stack(frames), total


def pad_to(frames: np.ndarray, length: int) -> np.ndarray:
    """Repeat the last frame so that ``frames`` has ``length`` frames (videos of unequal episodes)."""
    if len(frames) >= length:
        return frames[:length]
    return np.concatenate([frames, np.repeat(frames[-1:], length - len(frames), axis=0)])


def write_comparison_video(path: Path, real: np.ndarray | None, dream: np.ndarray | None, fps: int = 8) -> Path:
    """real | dream side by side (shorter episode padded with its last frame), or just the one given."""
    from rad_env.video import write_side_by_side, write_video

    if real is not None and dream is not None:
        length = max(len(real), len(dream))
        return write_side_by_side(Path(path), pad_to(real, length), pad_to(dream, length), fps=fps)
    frames = real if real is not None else dream
    if frames is None:
        raise ValueError("nothing to write: no real and no dream frames")
    return write_video(path, frames, fps=fps)

