"""The batched dream simulator shared by the single env, the vector env and the SB3 adapter."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch

from ..checkpoint import CheckpointError, load_world_model
from ..data import get_action_set
from ..defaults import default_assets_dir
from ..model import WorldModel
from ..runtime import inference_autocast, inference_dtype, resolve_device
from .context import StartFrames
from .specs import DreamSpec, discrete_action


def load_dream_model(checkpoint: str | os.PathLike | WorldModel | None, spec: DreamSpec,
                     device: torch.device) -> tuple[WorldModel, dict[str, Any]]:
    """Load ``checkpoint`` (a path, None for the shipped default, or a WorldModel already in memory)
    and check it fits ``spec``. Returns (model in eval mode on ``device``, checkpoint dict or {})."""
    names = " or ".join(repr(name) for name in spec.action_sets)
    if isinstance(checkpoint, WorldModel):
        expected = sorted({get_action_set(name).num_actions for name in spec.action_sets})
        if checkpoint.config.num_actions not in expected:
            raise ValueError(f"the model takes {checkpoint.config.num_actions} actions, the {names} "
                             f"dream env needs {' or '.join(map(str, expected))}")
        return checkpoint.to(device).eval(), {}
    if checkpoint is None:
        if spec.default_checkpoint is None:
            raise CheckpointError(f"no checkpoint is shipped for the {names} dream env; pass "
                                  "checkpoint=PATH (train one with `python -m rad_env.train`)")
        checkpoint = default_assets_dir() / spec.default_checkpoint
        if not checkpoint.exists():
            raise CheckpointError(f"the shipped default checkpoint {checkpoint} is missing from this installation; "
                                  "pass checkpoint=PATH (train one with `python -m rad_env.train --data DATA "
                                  "--preset tiny --out runs/tiny`, then use runs/tiny/model.pt)")
    if isinstance(checkpoint, (str, os.PathLike)):
        model, ckpt = load_world_model(checkpoint, device=device)
    else:
        raise TypeError(f"checkpoint must be a path, a WorldModel or None, got {type(checkpoint).__name__}")
    found = ckpt.get("data", {}).get("action_set")
    if found not in spec.action_sets:
        raise CheckpointError(f"{checkpoint}: incompatible checkpoint: trained on action set {found!r}, "
                              f"this env needs {names}")
    model.eval()
    return model, ckpt


class DreamCore:
    """``num_envs`` dream episodes advanced together: one model forward per denoising step for all.

    Each env owns a ``numpy`` generator (start segments) and a ``torch`` generator (diffusion noise)
    drawn from it, so a batch of envs reproduces the same envs run one by one. ``amp``: the model's
    precision (:func:`rad_env.runtime.inference_autocast`; ``auto``: bf16 where the device multiplies it
    natively, ``none``: float32).

    ``start_turns`` > 0: each episode drawn by :meth:`reset_env` first turns in place, dreamed, 0 to
    ``start_turns`` steps one way (``turn_actions``: the left and right ids; rewards not paid), so that an
    agent does not start where the recorded walk was heading but must find what it is after.

    ``reward_cooldown``: after a paid reward the next this many steps pay none, as in the real env (the spec's
    ``reward_cooldown``; Memory Maze replaces a touched target by one elsewhere), so that a dream that keeps
    its reward head firing at a target cannot pay an agent for standing there.
    """

    def __init__(self, model, starts: StartFrames, num_envs: int, *, sampling_steps: int | None = None,
                 device: torch.device | str = "cpu", reward_threshold: float = 0.5,
                 termination_threshold: float = 0.5, amp: str = "auto", start_turns: int = 0,
                 turn_actions: Sequence[int] = (), reward_cooldown: int = 0) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if start_turns < 0:
            raise ValueError(f"start_turns must be >= 0, got {start_turns}")
        if reward_cooldown < 0:
            raise ValueError(f"reward_cooldown must be >= 0, got {reward_cooldown}")
        if start_turns and not turn_actions:
            raise ValueError("start_turns needs the action set's turn_actions (ids that turn in place)")
        self.model = model
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.num_envs = num_envs
        self.starts = starts
        self.sampling_steps = sampling_steps
        inference_dtype(self.device, amp)  # a bad value fails here, not at the first step
        self.amp = amp
        self.num_actions = model.config.num_actions
        size = model.config.image_size
        self.frame_shape = (size, size, 3)
        if tuple(starts.frames.shape[2:]) != self.frame_shape:
            raise ValueError(f"start frames are {starts.frames.shape[2:]}, the model makes {self.frame_shape}")
        if starts.prev_actions is not None and (starts.prev_actions.min() < 0
                                                or starts.prev_actions.max() > self.num_actions):
            raise ValueError(f"start frames ({starts.source}) have previous actions outside [0, {self.num_actions}] "
                             f"(found {int(starts.prev_actions.min())}..{int(starts.prev_actions.max())}): were "
                             "they recorded with another action set than the checkpoint's?")
        self.reward_threshold = reward_threshold
        self.termination_threshold = termination_threshold
        self.start_turns = start_turns
        self.turn_actions = tuple(int(a) for a in turn_actions)
        self.state = model.init_state(num_envs, device=self.device)
        self.generators = [torch.Generator(device=self.device) for _ in range(num_envs)]
        self.frames = np.zeros((num_envs, *self.frame_shape), np.uint8)
        self.steps = np.zeros(num_envs, np.int64)
        self.reward_cooldown = reward_cooldown
        self.cooling = np.zeros(num_envs, np.int64)  # steps left in which no reward is paid
        self.refused = np.zeros(num_envs, bool)  # the last step's presses the collision gate refused
        self.features: torch.Tensor | None = None  # the last step's head features (num_envs, F), what the heads read

    @torch.no_grad()
    def reset_env(self, i: int, rng: np.random.Generator) -> np.ndarray:
        """Start env ``i`` from a real segment chosen with ``rng`` (then its random spin: ``start_turns``);
        returns its first observation."""
        frames, prev_actions = self.starts.sample(rng)
        turns: list[int] = []
        if self.start_turns:
            turns = [int(rng.choice(self.turn_actions))] * int(rng.integers(0, self.start_turns + 1))
        return self.start_env(i, frames, prev_actions, int(rng.integers(2**63 - 1)), turns)

    @torch.no_grad()
    def start_env(self, i: int, frames: np.ndarray, prev_actions: np.ndarray | None, seed: int,
                  then: Sequence[int] = ()) -> np.ndarray:
        """Start env ``i`` from the real ``frames`` (C, H, W, 3) that ``prev_actions`` (C,) led to (None:
        unknown), its diffusion noise seeded ``seed``, then dream the actions ``then`` (their rewards are
        not paid); returns its first observation (the last real frame, or the last dreamed one)."""
        then = [discrete_action(a, self.num_actions) for a in then]  # checked before any work
        self.generators[i].manual_seed(seed)
        if prev_actions is None:  # unknown: the null action (as after a reset)
            prev_actions = np.full(len(frames), self.model.config.null_action, np.int64)
        state = self.model.init_state(1, device=self.device)
        with inference_autocast(self.device, self.amp):
            for t in range(len(frames)):
                frame = torch.from_numpy(np.ascontiguousarray(frames[t][None])).to(self.device)
                action = torch.tensor([int(prev_actions[t])], device=self.device)
                state = self.model.observe(frame, action, state, generators=[self.generators[i]])
            last = frames[-1]
            for a in then:
                step = self.model.imagine(torch.tensor([a], device=self.device), state, steps=self.sampling_steps,
                                          generators=[self.generators[i]])
                state, last = step.state, step.frames[0].cpu().numpy()
        self.state.index_copy_(torch.tensor([i], device=self.device), state)
        self.frames[i] = last
        self.steps[i] = 0
        self.cooling[i] = 0
        self.refused[i] = False
        return self.frames[i].copy()

    def check_actions(self, actions: Sequence[int] | np.ndarray) -> np.ndarray:
        """The actions as int64 ids, one per env; ``ValueError`` naming the problem otherwise.

        Booleans are rejected (``True`` is not action 1), as Gymnasium's ``Discrete`` rejects numpy
        booleans; whole floats such as ``2.0`` are accepted."""
        if isinstance(actions, (list, tuple)) and any(isinstance(a, (bool, np.bool_)) for a in actions):
            raise ValueError(f"actions must be integer ids in [0, {self.num_actions}), not booleans: {actions!r}")
        array = np.asarray(actions)
        if array.shape != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} action(s), got shape {array.shape}")
        if array.dtype == np.bool_:
            raise ValueError(f"actions must be integer ids in [0, {self.num_actions}), not booleans: {array!r}")
        if not np.issubdtype(array.dtype, np.integer):
            with np.errstate(invalid="ignore"):
                whole = np.issubdtype(array.dtype, np.floating) and bool(np.all(np.mod(array, 1) == 0))
            if whole:
                array = array.astype(np.int64)
            else:
                raise ValueError(f"actions must be integers in [0, {self.num_actions}), got {array!r}")
        if array.min() < 0 or array.max() >= self.num_actions:
            raise ValueError(f"actions must lie in [0, {self.num_actions}), got {array.tolist()}")
        return array.astype(np.int64)

    @torch.no_grad()
    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Imagine the next frame of every env; returns (frames, rewards, terminated). Afterwards
        :attr:`refused` says which presses the model's collision gate refused (a step into a wall), and
        :attr:`features` holds what the reward and termination heads read of each new frame."""
        actions = self.check_actions(actions)
        action_t = torch.from_numpy(actions).to(self.device)
        with inference_autocast(self.device, self.amp):
            frames, reward, term_prob, self.state, performed, self.features = self.model.imagine(
                action_t, self.state, steps=self.sampling_steps, generators=self.generators)
        self.frames = frames.cpu().numpy()
        self.refused = performed.cpu().numpy() != actions
        self.steps += 1
        # The head predicts the reward's sign class (-1/0/+1); its expected value is thresholded so
        # the dream pays out whole rewards like the real env (Memory Maze: 0 or 1 per step).
        expected = reward.float().cpu().numpy()
        rewards = (np.sign(expected) * (np.abs(expected) >= self.reward_threshold)).astype(np.float32)
        rewards[self.cooling > 0] = 0.0  # the real env pays no reward this soon after the last one
        self.cooling = np.where(rewards != 0, self.reward_cooldown, np.maximum(self.cooling - 1, 0))
        terminated = term_prob.float().cpu().numpy() > self.termination_threshold
        return self.frames.copy(), rewards, terminated
