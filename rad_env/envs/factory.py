"""The one place that builds dream and real environments (as Stable-Baselines3's ``env_util``).

Load the world model once with :func:`make_dream_core`, then build any number of envs over it::

    core = make_dream_core("runs/tiny/model.pt", context="data/mm9", num_envs=16)
    train_env = make_dream_sb3_vec_env(core)                  # PPO: one model call per step for all 16
    eval_env = make_dream_sb3_vec_env(share_core(core, 4))    # same weights, its own 4 episodes
    video_env = make_dream_env(core)                          # a single Gymnasium env, same weights
    real = make_real_vec_env(2, max_steps=200)                # the real Memory Maze, as an SB3 VecEnv

``DreamEnv``, ``DreamVectorEnv`` and ``DreamSB3VecEnv`` build their core here too when given none.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from ..data import get_action_set
from ..model import WorldModel
from ..runtime import resolve_device
from .context import resolve_start_frames
from .core import DreamCore, load_dream_model
from .specs import MEMORY_MAZE_SPEC, DreamSpec

if TYPE_CHECKING:  # SB3 and the env classes load only when an env is built
    from stable_baselines3.common.vec_env import VecEnv

    from .vector import DreamVectorEnv


def make_dream_core(checkpoint: str | os.PathLike | WorldModel | None = None, context: Any = None,
                    num_envs: int = 1, *, spec: DreamSpec = MEMORY_MAZE_SPEC, device: str | Any = "auto",
                    sampling_steps: int | None = None, compile: bool = False, amp: str = "auto",
                    start_turns: int = 0) -> DreamCore:
    """A batch of ``num_envs`` dream episodes over one world model.

    Args:
        checkpoint: a RAD checkpoint path, None for the shipped default, or a ``WorldModel`` in memory.
        context: where episodes start: recorded episodes (path), frames, a ``StartFrames``, or None
            for the shipped start frames. Segments are one attention window long unless given.
        spec: which dream env (action set, shipped defaults).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda:0"``, ...
        sampling_steps: Euler steps per frame (None: the model's own levels; another count: a Karras schedule).
        compile: compile the model's frame pass with ``torch.compile`` (~1.6x faster steps on a CPU after
            ~25 s of compilation in the first steps; worth it for long runs such as PPO training).
        amp: the model's precision: ``"auto"`` (bf16 autocast where the device multiplies bf16 natively: CUDA,
            CPUs with AVX512-BF16 or AMX; 1.25x faster on such a CPU, PSNR within 0.02 dB), ``"bf16"``, ``"none"``.
        start_turns: each episode first turns in place, dreamed, 0 to this many steps one way (0: none), so
            that it does not face where the recorded start was heading (:class:`DreamCore`).
    """
    device = resolve_device(device)
    model, ckpt = load_dream_model(checkpoint, spec, device)
    action_set = get_action_set(ckpt.get("data", {}).get("action_set") or spec.action_sets[0])
    if compile:
        model.dit.compile_frame_pass()
    starts = resolve_start_frames(context, model.config.window, spec.default_context)
    return DreamCore(model, starts, num_envs, sampling_steps=sampling_steps, device=device, amp=amp,
                     start_turns=start_turns, turn_actions=action_set.turns, reward_cooldown=spec.reward_cooldown)


def share_core(core: DreamCore, num_envs: int, start_turns: int = 0) -> DreamCore:
    """A new batch of ``num_envs`` dream episodes that reuses ``core``'s model and start frames (with its own
    ``start_turns``: evaluation starts where the recorded walks were, whatever spin training used)."""
    return DreamCore(core.model, core.starts, num_envs, sampling_steps=core.sampling_steps, device=core.device,
                     reward_threshold=core.reward_threshold, termination_threshold=core.termination_threshold,
                     amp=core.amp, start_turns=start_turns, turn_actions=core.turn_actions,
                     reward_cooldown=core.reward_cooldown)


def make_dream_env(core: DreamCore, max_episode_steps: int | None = None, *, spec: DreamSpec = MEMORY_MAZE_SPEC,
                   render_mode: str | None = None) -> gym.Env:
    """A single dream env (its own batch of 1 over ``core``'s model) with the episode time limit."""
    from .dream import DreamEnv

    env = DreamEnv(spec, core=share_core(core, 1), render_mode=render_mode)
    return gym.wrappers.TimeLimit(env, max_episode_steps or spec.max_episode_steps)


def make_dream_vector_env(core: DreamCore, max_episode_steps: int | None = None, *,
                          spec: DreamSpec = MEMORY_MAZE_SPEC,
                          autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP) -> "DreamVectorEnv":
    """A Gymnasium vector env over ``core``'s batch (one model call per step for all envs)."""
    from .vector import DreamVectorEnv

    return DreamVectorEnv(core.num_envs, spec, core=core, max_episode_steps=max_episode_steps,
                          autoreset_mode=autoreset_mode)


def make_dream_sb3_vec_env(core: DreamCore, max_episode_steps: int | None = None, *,
                           spec: DreamSpec = MEMORY_MAZE_SPEC, monitor: bool = True) -> "VecEnv":
    """An SB3 ``VecEnv`` over ``core``'s batch, with episode statistics (``VecMonitor``) by default."""
    from stable_baselines3.common.vec_env import VecMonitor

    from .sb3 import DreamSB3VecEnv

    vector = make_dream_vector_env(core, max_episode_steps, spec=spec, autoreset_mode=AutoresetMode.SAME_STEP)
    venv = DreamSB3VecEnv(core.num_envs, vector_env=vector)
    return VecMonitor(venv) if monitor else venv


def make_real_env(max_steps: int | None = None, size: int = 9) -> gym.Env:
    """The real Memory Maze (Gymnasium API), cut to ``max_steps`` if that is shorter than the task."""
    from .memory_maze import MemoryMazeEnv

    env: gym.Env = MemoryMazeEnv(size)
    if max_steps is not None and max_steps < env.unwrapped.max_steps:
        env = gym.wrappers.TimeLimit(env, max_steps)
    return env


def make_real_vec_env(num_envs: int, max_steps: int | None = None, *, size: int = 9,
                      subprocess: bool = False) -> "VecEnv":
    """``num_envs`` real Memory Mazes as an SB3 VecEnv, each with a ``Monitor`` (episode statistics);
    in subprocesses with ``subprocess=True``."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    def make() -> gym.Env:
        return Monitor(make_real_env(max_steps, size))

    makers = [make for _ in range(num_envs)]
    return SubprocVecEnv(makers) if subprocess and num_envs > 1 else DummyVecEnv(makers)
