"""Agents that see their last frames (agents.frame_stack, agents.train_ppo --frame-stack): the stack is built by
SB3's VecFrameStack, a saved agent is fed as many frames as it was trained on, everywhere it is evaluated."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from agents import train_ppo
from agents.common import RandomAgent, record_episode
from agents.frame_stack import frames_in, frames_seen, saved_frames, stack_frames


class Counter(gym.Env):
    """Frame t is filled with t; 5 steps per episode (frames large enough for SB3 to find their channel axis)."""

    observation_space = gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.frame(), {}

    def step(self, action):
        self.t += 1
        return self.frame(), 1.0, self.t == 5, False, {}

    def frame(self) -> np.ndarray:
        return np.full((16, 16, 3), self.t, np.uint8)


class Watcher:
    """Records what it was shown; always action 0."""

    def __init__(self, frames: int) -> None:
        self.observation_space = gym.spaces.Box(0, 255, (16, 16, 3 * frames), np.uint8)
        self.seen: list[np.ndarray] = []

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        self.seen.append(np.asarray(observation).copy())
        return np.zeros(len(observation), np.int64), state


def test_frames_in_reads_the_channel_axis_wherever_it_is() -> None:
    assert frames_in(gym.spaces.Box(0, 255, (64, 64, 12), np.uint8)) == 4   # channels last (the env's)
    assert frames_in(gym.spaces.Box(0, 255, (12, 64, 64), np.uint8)) == 4   # channels first (as SB3 saves it)
    assert frames_in(gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)) == 1
    assert frames_in(None) == 1 and frames_seen(RandomAgent(6)) == 1
    with pytest.raises(ValueError, match="not a whole number"):
        frames_in(gym.spaces.Box(0, 255, (64, 64, 4), np.uint8))
    with pytest.raises(ValueError, match="frames must be >= 1"):
        stack_frames(DummyVecEnv([Counter]), 0)


def test_recorded_episode_feeds_the_stack_and_keeps_single_frames() -> None:
    agent = Watcher(frames=3)
    frames, total = record_episode(agent, Counter(), seed=0)
    assert frames.shape == (6, 16, 16, 3) and [int(f[0, 0, 0]) for f in frames] == [0, 1, 2, 3, 4, 5] and total == 5
    # what the agent saw at step t: frames t-2, t-1, t side by side, oldest first, zeros before the first frame
    assert [[int(o[0, 0, 0, 3 * k]) for k in range(3)] for o in agent.seen] == \
        [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4]]
    single = Watcher(frames=1)
    record_episode(single, Counter(), seed=0, max_steps=2)
    assert [o.shape for o in single.seen] == [(1, 16, 16, 3)] * 2


def test_ppo_trains_and_evaluates_on_stacked_frames(dream_files, tmp_path) -> None:
    args = ["--checkpoint", dream_files["checkpoint"], "--context", dream_files["context"], "--device", "cpu",
            "--no-compile", "--num-envs", "2", "--n-steps", "32", "--batch-size", "32", "--n-epochs", "1",
            "--eval-episodes", "1", "--eval-max-steps", "4", "--eval-envs", "dream", "--verbose", "0"]
    summary = train_ppo.cli([*args, "--frame-stack", "3", "--timesteps", "64", "--train-max-steps", "8",
                             "--video-max-steps", "4", "--out", str(tmp_path / "a")])
    saved = tmp_path / "a" / "ppo_dream.zip"
    assert saved_frames(saved) == 3 and summary["config"]["frame_stack"] == 3
    assert summary["eval"][0]["lengths"] == [4]
    # loaded without --frame-stack: evaluated and trained on in its own 3 frames
    again = train_ppo.cli([*args, "--load", str(saved), "--timesteps", "64", "--no-video", "--out", str(tmp_path / "b")])
    assert again["train"]["timesteps"] > 64 and saved_frames(tmp_path / "b" / "ppo_dream.zip") == 3
    with pytest.raises(train_ppo.UserError, match="trained on 3 frame"):
        train_ppo.cli([*args, "--load", str(saved), "--frame-stack", "2", "--timesteps", "0", "--no-video",
                       "--out", str(tmp_path / "c")])
    assert not (tmp_path / "c").exists()
    with pytest.raises(train_ppo.UserError, match="--frame-stack is for PPO agents"):
        train_ppo.parse_config(["--policy", "random", "--frame-stack", "2"]).validate()


def test_frame_feeder_gives_what_vec_frame_stack_gives() -> None:
    """Code that steps envs itself (the recorder's agent policy, the approach probe, videos) feeds the agent the
    same stacks as the VecEnv path of training and evaluation."""
    venv = stack_frames(DummyVecEnv([Counter, Counter]), 3)
    feeder = feeder_for(3)
    raw = [np.stack([Counter().reset()[0]] * 2)]
    via_vec, via_feeder = [venv.reset()], [feeder.start(raw[0])]
    for t in range(1, 4):
        raw.append(np.stack([np.full((16, 16, 3), t, np.uint8)] * 2))
        via_vec.append(venv.step(np.zeros(2, np.int64))[0])
        via_feeder.append(feeder.next(raw[t]))
    for a, b in zip(via_vec, via_feeder):
        assert a.shape == (2, 16, 16, 9) and np.array_equal(a, b)
    with pytest.raises(RuntimeError, match="before start"):
        feeder_for(2).next(raw[0])
    one = feeder_for(1)
    assert one.start(raw[0]) is raw[0] and one.next(raw[1]) is raw[1]


def feeder_for(frames: int):
    """A FrameFeeder for an agent that reads ``frames`` frames."""
    from agents.frame_stack import FrameFeeder

    return FrameFeeder(Watcher(frames))


def test_recorder_agent_policy_feeds_a_stacked_agent_its_last_frames(tmp_path) -> None:
    from stable_baselines3 import PPO

    from collect.policies import AgentPolicy

    venv = stack_frames(DummyVecEnv([lambda: gym.wrappers.TimeLimit(Frames(), 50)]), 2)
    PPO("CnnPolicy", venv, n_steps=8, batch_size=8, device="cpu", seed=0).save(tmp_path / "two.zip")
    assert saved_frames(tmp_path / "two.zip") == 2
    policy = AgentPolicy(str(tmp_path / "two.zip"), 6, deterministic=True)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    first = [policy(f) for f in frames]
    policy.reset()
    assert [policy(f) for f in frames] == first  # a new episode starts from an empty stack again
    expected = feeder_for(2)
    seen = [expected.start(frames[:1])] + [expected.next(frames[t:t + 1]) for t in range(1, 5)]
    agent = PPO.load(tmp_path / "two.zip", device="cpu")
    assert first == [int(agent.predict(s, deterministic=True)[0][0]) for s in seen]


class Frames(gym.Env):
    observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = gym.spaces.Discrete(6)

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}
