"""Refused presses reported by the dream envs (info["refused"]) and the PPO trainer's shaping from them
(agents.shaping: the wall penalty and the forward bonus), on a tiny model whose collision gate refuses every step
it can, or none."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from agents import train_ppo
from agents.shaping import WallShaping
from rad_env.cli import UserError
from rad_env.envs.dream import DreamEnv
from rad_env.envs.factory import make_dream_core, make_dream_sb3_vec_env
from rad_env.model import WorldModel
from test_envs import dream_files, tiny_model  # noqa: F401 - fixtures

REFUSED_AS = [0, 0, 2, 3, 2, 3]  # Memory Maze: noop, forward, left, right, forward-left, forward-right


def walled_model(refuse: bool = True) -> WorldModel:
    """The tiny test model with a collision gate that refuses every step forward (held as a noop), or with
    ``refuse=False`` none; its reward head pays nothing."""
    plain = tiny_model()
    model = WorldModel(dataclasses.replace(plain.config, refused_actions=REFUSED_AS, hold_refused_as=[0])).eval()
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("collision.") for name in missing)
    with torch.no_grad():
        last = model.collision.net[-1]
        last.weight.zero_()
        last.bias.fill_(10.0 if refuse else -10.0)
    return model


@pytest.fixture
def core(dream_files):  # noqa: F811 - the fixture
    return make_dream_core(walled_model(), str(dream_files["context"]), 3, device="cpu")


def test_the_dream_reports_each_press_its_wall_refuses(core) -> None:
    rng = np.random.default_rng(0)
    for i in range(3):
        core.reset_env(i, rng)
    before = core.frames.copy()
    core.step([1, 2, 4])  # forward: refused and held; left: a turn; forward-left: refused as a left turn
    assert core.refused.tolist() == [True, False, True]
    assert np.array_equal(core.frames[0], before[0]) and not np.array_equal(core.frames[1], before[1])
    core.reset_env(0, rng)
    assert core.refused.tolist() == [False, False, True]  # a new episode has refused nothing yet
    env = DreamEnv(core=make_dream_core(walled_model(), core.starts, 1, device="cpu"))
    env.reset(seed=0)
    assert env.step(1)[4] == {"refused": True} and env.step(3)[4] == {"refused": False}


def test_a_plain_dream_refuses_nothing(dream_files) -> None:  # noqa: F811 - the fixture
    core = make_dream_core(tiny_model(), str(dream_files["context"]), 2, device="cpu")
    core.reset_env(0, np.random.default_rng(0))
    core.reset_env(1, np.random.default_rng(1))
    core.step([1, 4])
    assert core.refused.tolist() == [False, False]


def test_wall_penalty_charges_refused_presses_and_logs_the_dreams_own_return(core) -> None:
    venv = WallShaping(make_dream_sb3_vec_env(core, max_episode_steps=4), penalty=0.25, forward_bonus=0.5)
    venv.seed(0)
    venv.reset()
    for step in range(4):
        _, rewards, dones, infos = venv.step(np.array([1, 2, 5]))
        assert rewards.tolist() == [-0.25, 0.0, -0.25]  # the head pays nothing; a refused forward earns no bonus
        assert [info["refused"] for info in infos] == [True, False, True]
    assert dones.all()
    assert [info["episode"]["refused"] for info in infos] == [4, 0, 4]
    assert [info["episode"]["forward"] for info in infos] == [0, 0, 0]
    assert [info["episode"]["r"] for info in infos] == [0.0, 0.0, 0.0]  # VecMonitor inside: unshaped
    _, rewards, _, infos = venv.step(np.array([2, 2, 2]))
    assert rewards.tolist() == [0.0, 0.0, 0.0] and not any(info["refused"] for info in infos)
    for bad in ({"penalty": -1.0}, {"penalty": 0.0, "forward_bonus": -1.0}):
        with pytest.raises(ValueError, match="penalty and forward_bonus"):
            WallShaping(venv.venv, **bad)


def test_forward_bonus_pays_each_step_forward_the_dream_performs(dream_files) -> None:  # noqa: F811 - the fixture
    core = make_dream_core(walled_model(refuse=False), str(dream_files["context"]), 3, device="cpu")
    venv = WallShaping(make_dream_sb3_vec_env(core, max_episode_steps=3), penalty=0.25, forward_bonus=0.5)
    venv.seed(0)
    venv.reset()
    for actions in ([1, 4, 0], [1, 1, 2], [3, 1, 1]):  # only plain forward earns it, and nothing is refused here
        _, rewards, dones, infos = venv.step(np.array(actions))
        assert rewards.tolist() == [0.5 * (a == 1) for a in actions]
        assert not any(info["refused"] for info in infos)
    assert dones.all()
    assert [info["episode"]["forward"] for info in infos] == [2, 2, 1]
    assert [info["episode"]["refused"] for info in infos] == [0, 0, 0]
    assert [info["episode"]["r"] for info in infos] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("argv, message", [(["--wall-penalty", "-0.1"], "wall-penalty"),
                                           (["--forward-bonus", "-0.1"], "forward-bonus"),
                                           (["--wall-penalty", "0.1", "--train-env", "real"], "train-env dream"),
                                           (["--forward-bonus", "0.1", "--train-env", "real"], "train-env dream")])
def test_ppo_refuses_unusable_shaping(argv, message) -> None:
    with pytest.raises(UserError, match=message):
        train_ppo.parse_config(argv).validate()
