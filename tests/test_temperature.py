"""Sampling a trained agent at a temperature (agents.temperature, agents.train_ppo --temperature): T = 1 samples
the policy as trained, a small T gives its greedy action, a large one spreads its choices; the flag is checked."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from agents import train_ppo
from agents.temperature import TemperedAgent


class Still(gym.Env):
    observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = gym.spaces.Discrete(6)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros((64, 64, 3), np.uint8), {}

    def step(self, action):
        return np.zeros((64, 64, 3), np.uint8), 0.0, True, False, {}


@pytest.fixture(scope="module")
def agent() -> PPO:
    model = PPO("CnnPolicy", Still(), n_steps=16, batch_size=16, seed=0, device="cpu")
    with torch.no_grad():  # a policy with one clear favourite: action 2
        model.policy.action_net.bias.copy_(torch.tensor([0.0, 0.5, 2.0, 0.0, -0.5, 0.0]))
    return model


def frequencies(agent, temperature: float, n: int = 4000) -> np.ndarray:
    frames = np.random.default_rng(1).integers(0, 255, (n, 64, 64, 3), dtype=np.uint8)
    actions, _ = TemperedAgent(agent, temperature, seed=0).predict(frames)
    return np.bincount(actions, minlength=6) / n


def test_temperature_one_samples_the_policy_and_small_is_greedy(agent) -> None:
    frame = np.zeros((64, 64, 3), np.uint8)
    probs, batched = TemperedAgent(agent, 1.0).probabilities(frame)
    assert not batched and probs.shape == (1, 6) and torch.isclose(probs.sum(), torch.tensor(1.0))
    assert np.abs(frequencies(agent, 1.0) - probs[0].numpy()).max() < 0.04  # frames barely move these logits
    assert frequencies(agent, 0.01)[2] == 1.0  # the greedy action
    greedy, _ = TemperedAgent(agent, 0.5).predict(frame, deterministic=True)
    assert int(greedy) == 2
    cool, hot = frequencies(agent, 0.5), frequencies(agent, 4.0)
    assert cool[2] > probs[0, 2].item() + 0.1 > hot[2] + 0.2 and hot.min() > 0.08
    action, _ = TemperedAgent(agent, 0.5).predict(frame)
    assert np.asarray(action).shape == ()  # one frame in, one action out
    with pytest.raises(ValueError, match="temperature must be > 0"):
        TemperedAgent(agent, 0.0)


def test_temperature_flag_is_checked(dream_files, tmp_path) -> None:
    for argv, message in ((["--temperature", "0"], "must be > 0"),
                          (["--temperature", "0.5", "--policy", "random"], "--policy random has no logits"),
                          (["--temperature", "0.5", "--deterministic"], "the greedy action has no temperature")):
        with pytest.raises(train_ppo.UserError, match=message):
            train_ppo.parse_config(argv).validate()
    args = ["--checkpoint", dream_files["checkpoint"], "--context", dream_files["context"], "--device", "cpu",
            "--no-compile", "--num-envs", "2", "--n-steps", "32", "--batch-size", "32", "--n-epochs", "1",
            "--eval-episodes", "2", "--eval-max-steps", "4", "--eval-envs", "dream", "--verbose", "0", "--no-video"]
    train_ppo.cli([*args, "--timesteps", "64", "--train-max-steps", "8", "--out", str(tmp_path / "a")])
    summary = train_ppo.cli([*args, "--load", str(tmp_path / "a" / "ppo_dream.zip"), "--timesteps", "0",
                             "--temperature", "0.5", "--out", str(tmp_path / "b")])
    assert summary["config"]["temperature"] == 0.5 and summary["eval"][0]["lengths"] == [4, 4]
