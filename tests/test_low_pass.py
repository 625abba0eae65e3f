"""Agents that see block means (agents.low_pass, agents.train_ppo --view-pool): the filter is NatureCNN's input
averaged over each block, it is saved with the policy, and a loaded agent keeps it wherever it is evaluated."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.torch_layers import NatureCNN

from agents import train_ppo
from agents.common import RandomAgent
from agents.low_pass import LowPassCNN, view_pool_kwargs, view_pool_of

SPACE = gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)  # channels first, as SB3 hands it to extractors


def test_low_pass_is_nature_cnn_on_block_means() -> None:
    torch.manual_seed(0)
    extractor = LowPassCNN(SPACE, pool=4)
    frames = torch.rand(2, 3, 64, 64)
    blocks = frames.reshape(2, 3, 16, 4, 16, 4).mean(dim=(3, 5))
    by_hand = blocks[:, :, :, None, :, None].expand(2, 3, 16, 4, 16, 4).reshape(2, 3, 64, 64)
    assert torch.allclose(extractor.low_pass(frames), by_hand, atol=1e-6)
    assert torch.allclose(extractor(frames), NatureCNN.forward(extractor, by_hand), atol=1e-6)
    # detail inside a block is invisible to it, a change of a block's mean is not
    shuffled = frames.clone()
    shuffled[:, :, :4, :4] = frames[:, :, :4, :4].flip(-1).flip(-2)
    assert torch.allclose(extractor(shuffled), extractor(frames), atol=1e-6)
    brighter = frames.clone()
    brighter[:, :, :4, :4] += 0.5
    assert not torch.allclose(extractor(brighter), extractor(frames), atol=1e-4)
    assert torch.equal(LowPassCNN(SPACE, pool=1).low_pass(frames), frames)
    with pytest.raises(ValueError, match="divide the frame's 64x64"):
        LowPassCNN(SPACE, pool=3)
    assert view_pool_kwargs(1) == {} and view_pool_of(RandomAgent(6)) == 1


def test_ppo_saves_and_loads_its_view_pool(dream_files, tmp_path) -> None:
    args = ["--checkpoint", dream_files["checkpoint"], "--context", dream_files["context"], "--device", "cpu",
            "--no-compile", "--num-envs", "2", "--n-steps", "32", "--batch-size", "32", "--n-epochs", "1",
            "--eval-episodes", "1", "--eval-max-steps", "4", "--eval-envs", "dream", "--verbose", "0", "--no-video"]
    summary = train_ppo.cli([*args, "--view-pool", "8", "--timesteps", "64", "--train-max-steps", "8",
                             "--out", str(tmp_path / "a")])
    assert summary["config"]["view_pool"] == 8 and summary["eval"][0]["lengths"] == [4]
    saved = tmp_path / "a" / "ppo_dream.zip"
    loaded = PPO.load(saved, device="cpu")
    assert isinstance(loaded.policy.features_extractor, LowPassCNN) and view_pool_of(loaded) == 8
    # trained on further from the saved agent: still its own filter
    again = train_ppo.cli([*args, "--load", str(saved), "--timesteps", "64", "--out", str(tmp_path / "b")])
    assert again["view_pool"] == 8 and again["config"]["view_pool"] == 1
    assert view_pool_of(PPO.load(tmp_path / "b" / "ppo_dream.zip", device="cpu")) == 8
    with pytest.raises(train_ppo.UserError, match="--view-pool with --load"):
        train_ppo.parse_config(["--load", str(saved), "--view-pool", "4"]).validate()
    with pytest.raises(train_ppo.UserError, match="--view-pool is for PPO agents"):
        train_ppo.parse_config(["--policy", "random", "--view-pool", "4"]).validate()
    with pytest.raises(train_ppo.UserError, match="--view-pool 3: pool must be >= 1 and divide"):
        train_ppo.cli([*args, "--view-pool", "3", "--timesteps", "64", "--out", str(tmp_path / "c")])
    assert not (tmp_path / "c").exists()
