"""Gymnasium envs whose observations are imagined by a RAD world model."""

from __future__ import annotations

import importlib.util
from typing import Any

import gymnasium as gym
import numpy as np

from .core import DreamCore
from .factory import make_dream_core
from .specs import MEMORY_MAZE_SPEC, DreamSpec, discrete_action


def render_modes() -> list[str]:
    """``rgb_array``, plus ``human`` when pygame (the ``[play]`` extra) is installed: an env must not
    advertise a mode it cannot render (Gymnasium's env checker renders every advertised mode)."""
    return ["rgb_array", "human"] if importlib.util.find_spec("pygame") is not None else ["rgb_array"]


class DreamEnv(gym.Env):
    """A single dream episode. Observation: the imagined 64x64 RGB frame; action space identical to
    the real env's. Reward and termination come from the model's heads; truncation at the real
    env's episode length is applied by ``gym.make`` (``max_episode_steps``). ``info["refused"]``: the
    model's collision gate refused the press (a step into a wall; always False without a gate).

    Args:
        checkpoint: path to a RAD checkpoint, a ``WorldModel`` in memory, or None for the shipped default.
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda:0"``, ...
        sampling_steps: Euler steps per frame (None: the model's own levels; another count: a Karras schedule).
        context: start segments: a path to recorded episodes, frames, a StartFrames, or None.
        compile: compile the model's frame pass (``torch.compile``): faster steps after ~25 s.
        amp: the model's precision: ``"auto"`` (bf16 where the device multiplies it natively), ``"bf16"``, ``"none"``.
    """

    metadata = {"render_modes": render_modes(), "render_fps": 4}

    def __init__(self, spec: DreamSpec = MEMORY_MAZE_SPEC, *, checkpoint=None, device: str = "auto",
                 sampling_steps: int | None = None, context: Any = None, compile: bool = False,
                 render_mode: str | None = None, amp: str = "auto",
                 core: DreamCore | None = None) -> None:
        if render_mode == "human" and "human" not in self.metadata["render_modes"]:
            raise ValueError("render_mode='human' needs pygame and a display: pip install pygame "
                             "(or the [play] extra), or use render_mode='rgb_array'")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.core = core or make_dream_core(checkpoint, context, 1, spec=spec, device=device,
                                            sampling_steps=sampling_steps, compile=compile, amp=amp)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, self.core.frame_shape, np.uint8)
        self.action_space = gym.spaces.Discrete(self.core.num_actions)
        self._viewer = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs = self.core.reset_env(0, self.np_random)
        if self.render_mode == "human":
            self.render()
        return obs, {}

    def step(self, action):
        frames, rewards, terminated = self.core.step(np.array([discrete_action(action, self.action_space.n)]))
        if self.render_mode == "human":
            self.render()
        return frames[0], float(rewards[0]), bool(terminated[0]), False, {"refused": bool(self.core.refused[0])}

    def render(self):
        frame = self.core.frames[0].copy()
        if self.render_mode == "human":
            from .viewer import FrameViewer

            if self._viewer is None:
                self._viewer = FrameViewer(title="RAD dream")
            self._viewer.show(frame)
            return None
        return frame

    def close(self) -> None:
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
