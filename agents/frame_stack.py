"""Agents that see their last few frames: SB3's ``VecFrameStack`` around the env, and how many frames a saved
agent expects (read from its observation space, so a loaded agent is always fed as it was trained)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack

#: Channels of one frame (RGB).
FRAME_CHANNELS = 3


def frames_seen(agent: Any) -> int:
    """How many stacked frames ``agent`` reads (1 for an agent without an observation space, such as the random and
    scripted ones)."""
    return frames_in(getattr(agent, "observation_space", None))


def saved_frames(path: str | Path) -> int:
    """How many stacked frames the agent saved at ``path`` (an SB3 zip) reads, without building it."""
    from stable_baselines3.common.save_util import load_from_zip_file

    data, _, _ = load_from_zip_file(path, load_data=True, device="cpu", print_system_info=False)
    return frames_in((data or {}).get("observation_space"))


def frames_in(space: Any) -> int:
    """Frames in an image observation space: its channels over one frame's, wherever SB3 put the channel axis
    (it saves images channels-first); 1 for no space or a non-image one."""
    from stable_baselines3.common.preprocessing import is_image_space_channels_first

    if space is None or len(getattr(space, "shape", ()) or ()) != 3:
        return 1
    channels = int(space.shape[0] if is_image_space_channels_first(space) else space.shape[-1])
    if channels % FRAME_CHANNELS:
        raise ValueError(f"the agent reads {channels} channels, not a whole number of {FRAME_CHANNELS}-channel frames")
    return channels // FRAME_CHANNELS


def stack_frames(venv: VecEnv, frames: int) -> VecEnv:
    """``venv`` whose observations are its last ``frames`` frames side by side on the channel axis, oldest first
    (zeros before an episode's first frame); ``venv`` itself for one frame."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    return venv if frames == 1 else VecFrameStack(venv, frames, channels_order="last")


def stack_for(agent: Any, venv: VecEnv) -> VecEnv:
    """``venv`` stacked as ``agent`` reads it."""
    return stack_frames(venv, frames_seen(agent))


class FrameFeeder:
    """Feeds an agent that reads stacked frames from one batch of frames ``(N, H, W, 3)`` at a time, for code that
    steps envs itself instead of through a VecEnv (SB3's ``StackedObservations``, the engine of ``VecFrameStack``).
    ``start(frames)`` begins N new episodes, ``next(frames)`` continues them; both return what the agent reads."""

    def __init__(self, agent: Any) -> None:
        self.frames = frames_seen(agent)
        self.stack = None

    def start(self, frames: np.ndarray) -> np.ndarray:
        if self.frames == 1:
            return frames
        from stable_baselines3.common.vec_env.stacked_observations import StackedObservations

        space = gym.spaces.Box(0, 255, frames.shape[1:], frames.dtype)
        self.stack = StackedObservations(len(frames), self.frames, space, channels_order="last")
        return self.stack.reset(frames)

    def next(self, frames: np.ndarray) -> np.ndarray:
        if self.frames == 1:
            return frames
        if self.stack is None:
            raise RuntimeError("FrameFeeder.next before start")
        stacked, _ = self.stack.update(frames, np.zeros(len(frames), bool), [{} for _ in frames])
        return stacked
