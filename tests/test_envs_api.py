"""Dream env API details: the full Gymnasium checker on a default install, booleans as actions, render
modes without pygame, and the env factories (rad_env.envs.factory)."""

from __future__ import annotations

import importlib.util
import warnings

import gymnasium as gym
import numpy as np
import torch
import pytest
from gymnasium.utils.env_checker import check_env

import rad_env  # noqa: F401 - registers the env ids
from rad_env.defaults import default_assets_dir
from rad_env.envs import dream as dream_module
from rad_env.envs.dream import DreamEnv
from rad_env.envs.factory import (make_dream_core, make_dream_env, make_dream_sb3_vec_env, make_dream_vector_env,
                                  share_core)
from rad_env.envs.specs import MEMORY_MAZE_SPEC
from rad_env.envs.vector import DreamVectorEnv
from test_envs import ENV_ID, dream_files, kwargs, tiny_model  # noqa: F401 - fixtures

HAS_PYGAME = importlib.util.find_spec("pygame") is not None
SHIPPED = all((default_assets_dir() / name).exists()
              for name in (MEMORY_MAZE_SPEC.default_checkpoint, MEMORY_MAZE_SPEC.default_context))


@pytest.mark.skipif(not SHIPPED, reason="the shipped default checkpoint/start frames are not installed")
def test_full_gymnasium_checker_passes_on_the_default_env() -> None:
    """Exactly what a user runs: the checker renders every advertised render mode."""
    env = gym.make(ENV_ID, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker reports problems as warnings
        check_env(env.unwrapped)
    env.close()


def test_full_checker_on_a_test_model_renders_every_advertised_mode(kwargs) -> None:
    env = gym.make(ENV_ID, render_mode="rgb_array", **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message="RADConfig: dim")  # the micro test model is narrow on purpose
        check_env(env.unwrapped)
    env.close()


def test_human_mode_is_advertised_only_with_pygame(monkeypatch, kwargs) -> None:
    assert ("human" in DreamEnv.metadata["render_modes"]) == HAS_PYGAME
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pygame" else object())
    assert dream_module.render_modes() == ["rgb_array"]
    if not HAS_PYGAME:  # (gym.make would wrap the env in Gymnasium's HumanRendering instead)
        with pytest.raises(ValueError, match="pip install pygame"):
            DreamEnv(render_mode="human", **kwargs)


@pytest.mark.parametrize("action", [True, False, np.bool_(True), np.array(True)])
def test_booleans_are_not_actions(kwargs, action) -> None:
    """Discrete(6).contains(True) is True only because bool subclasses int (numpy booleans are refused):
    a boolean is never an action id, in the single env or the vector env."""
    env = gym.make(ENV_ID, disable_env_checker=True, **kwargs)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="invalid action"):
        env.step(action)
    env.step(1)
    env.close()


def test_vector_env_refuses_booleans(kwargs) -> None:
    venv = DreamVectorEnv(2, MEMORY_MAZE_SPEC, **kwargs)
    venv.reset(seed=0)
    for bad in ([True, False], [1, True], np.array([True, True]), (np.bool_(False), 1)):
        with pytest.raises(ValueError, match="not booleans"):
            venv.step(bad)
    venv.step([1, 2])
    venv.step(np.array([1.0, 2.0]))  # whole floats remain accepted
    venv.close()


def test_factories_share_one_model(dream_files) -> None:
    core = make_dream_core(str(dream_files["checkpoint"]), str(dream_files["context"]), 3, device="cpu")
    assert core.num_envs == 3 and core.num_actions == 6
    other = share_core(core, 2)
    assert other.model is core.model and other.starts is core.starts and other.num_envs == 2
    single = make_dream_env(core, max_episode_steps=2)
    assert single.unwrapped.core.model is core.model
    single.reset(seed=0)
    single.step(1)
    assert single.step(1)[3] is True  # truncated by the time limit
    vector = make_dream_vector_env(core, 5)
    assert vector.core is core and vector.max_episode_steps == 5
    sb3 = make_dream_sb3_vec_env(share_core(core, 2), 4)
    assert sb3.num_envs == 2 and sb3.reset().shape == (2, 64, 64, 3)
    sb3.close()
    single.close()


def test_a_model_in_memory_is_a_checkpoint(dream_files) -> None:
    model = tiny_model()
    core = make_dream_core(model, str(dream_files["context"]), 1, device="cpu")
    assert core.model is model
    env = DreamEnv(checkpoint=model, context=str(dream_files["context"]), device="cpu")
    env.reset(seed=0)
    env.step(3)
    with pytest.raises(ValueError, match="needs 6"):
        make_dream_core(tiny_model(num_actions=4), str(dream_files["context"]), 1, device="cpu")


def test_a_start_spin_is_the_dream_of_its_turns(dream_files) -> None:
    """start_env(..., then=turns) gives the frame and state that stepping those turns from the start gives."""
    spun = make_dream_core(str(dream_files["checkpoint"]), str(dream_files["context"]), 1, device="cpu",
                           start_turns=3)
    plain = share_core(spun, 1)
    assert spun.turn_actions == (2, 3) and plain.start_turns == 0  # memory-maze: turn_left, turn_right
    frames, prev_actions = spun.starts.sample(np.random.default_rng(0))
    obs = spun.start_env(0, frames, prev_actions, seed=5, then=[2, 2])
    assert np.array_equal(plain.start_env(0, frames, prev_actions, seed=5), frames[-1])
    plain.step([2])
    expected = plain.step([2])[0][0]
    assert np.array_equal(obs, expected) and not np.array_equal(obs, frames[-1])
    assert np.array_equal(spun.step([1])[0], plain.step([1])[0])  # the spun state carries on alike
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        spun.start_env(0, frames, prev_actions, seed=5, then=[6])


def test_reset_env_spins_each_start_up_to_start_turns_steps_one_way(dream_files, monkeypatch) -> None:
    core = make_dream_core(str(dream_files["checkpoint"]), str(dream_files["context"]), 1, device="cpu",
                           start_turns=3)
    spins: list[tuple[int, ...]] = []
    monkeypatch.setattr(core, "start_env", lambda i, frames, prev, seed, then=(): spins.append(tuple(then)))
    rng = np.random.default_rng(0)
    for _ in range(60):
        core.reset_env(0, rng)
    assert {len(s) for s in spins} == {0, 1, 2, 3}
    assert {s[0] for s in spins if s} == {2, 3} and all(len(set(s)) <= 1 for s in spins)
    core.start_turns, spins[:] = 0, []
    core.reset_env(0, rng)
    assert spins == [()]
    with pytest.raises(ValueError, match="start_turns must be >= 0"):
        share_core(core, 1, start_turns=-1)
    with pytest.raises(ValueError, match="turn_actions"):
        type(core)(core.model, core.starts, 1, start_turns=2)


def test_every_action_set_names_its_turns_in_place() -> None:
    from rad_env.data.actions import ACTION_SETS

    for action_set in ACTION_SETS.values():
        left, right = (action_set.names[i] for i in action_set.turns)
        assert "left" in left and "right" in right and "forward" not in left + right, action_set.name


def test_a_dream_pays_no_reward_sooner_after_the_last_than_the_real_env(dream_files, monkeypatch) -> None:
    """A reward head stuck on "reward" pays once every reward_cooldown + 1 steps (Memory Maze: a touched
    target is replaced by one elsewhere, 8 steps away at least), again from a reset; 0 pays every step."""
    core = make_dream_core(str(dream_files["checkpoint"]), str(dream_files["context"]), 2, device="cpu")
    assert core.reward_cooldown == MEMORY_MAZE_SPEC.reward_cooldown == 7
    imagine = core.model.imagine
    monkeypatch.setattr(core.model, "imagine",
                        lambda *a, **k: imagine(*a, **k)._replace(reward=torch.ones(2)))
    rng = np.random.default_rng(0)
    for i in range(2):
        core.reset_env(i, rng)
    paid = np.stack([core.step([1, 2])[1] for _ in range(18)])
    assert paid[:, 0].nonzero()[0].tolist() == [0, 8, 16] and np.array_equal(paid[:, 0], paid[:, 1])
    core.reset_env(1, rng)
    assert core.step([1, 1])[1].tolist() == [0.0, 1.0]  # env 0 is cooling down, env 1 starts afresh
    eager = share_core(core, 2)
    eager.reward_cooldown = 0
    for i in range(2):
        eager.reset_env(i, rng)
    assert all(eager.step([1, 1])[1].tolist() == [1.0, 1.0] for _ in range(3))
    with pytest.raises(ValueError, match="reward_cooldown"):
        type(core)(core.model, core.starts, 1, reward_cooldown=-1)
