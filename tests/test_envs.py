"""Dream envs (rad_env.envs) on a tiny randomly initialised checkpoint: Gymnasium/SB3 API, seeding,
vectorisation, autoreset and error messages."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

import rad_env  # noqa: F401 - registers the env ids
from rad_env.checkpoint import CheckpointError, save_checkpoint
from rad_env.envs.context import StartFrames
from rad_env.envs.dream import DreamEnv
from rad_env.envs.sb3 import DreamSB3VecEnv
from rad_env.envs.specs import MEMORY_MAZE_SPEC, MINECRAFT_SPEC
from rad_env.envs.vector import DreamVectorEnv
from rad_env.model import RADConfig, WorldModel
from rad_env.model.dit import FRAME_PASS_GRAPHS

ENV_ID = "RAD-MemoryMaze-v0"
SIZE = 64



def tiny_model(num_actions: int = 6, seed: int = 0) -> WorldModel:
    """A very small random model whose outputs depend on its inputs (AdaLN-Zero weights perturbed)
    and that never predicts termination (tests force terminations with the core's threshold)."""
    torch.manual_seed(seed)
    cfg = RADConfig.preset("tiny", dim=32, depth=1, heads=2, mlp_ratio=2.0, memory_slots=2, memory_dim=16,
                           noise_features=16, num_actions=num_actions)
    model = WorldModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model.head[-1].bias[3] = -30.0
    return model


def save_tiny(path: Path, action_set: str = "memory-maze", num_actions: int = 6) -> Path:
    data = dict(source="test", action_set=action_set, num_actions=num_actions, frame_shape=(SIZE, SIZE, 3))
    return save_checkpoint(path, tiny_model(num_actions), train_config={}, data=data, step=0)


@pytest.fixture(scope="session")
def dream_files(tmp_path_factory, random_episodes) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dream")
    return {"checkpoint": save_tiny(root / "tiny.pt"), "context": random_episodes(root / "starts.h5", [6, 6, 6]),
            "minecraft": save_tiny(root / "minecraft.pt", "minecraft", 4), "root": root}


@pytest.fixture
def kwargs(dream_files) -> dict:
    return {"checkpoint": str(dream_files["checkpoint"]), "context": str(dream_files["context"]), "device": "cpu"}


def rollout(env, seed: int, actions) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    frames = [obs]
    for a in actions:
        obs, *_ = env.step(a)
        frames.append(obs)
    return np.stack(frames)


# ------------------------------------------------------------------------------------------ API


def test_make_step_reset_close(kwargs) -> None:
    env = gym.make(ENV_ID, **kwargs)
    assert env.spec.max_episode_steps == 1000
    assert env.action_space == gym.spaces.Discrete(6)
    assert env.observation_space == gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
    obs, info = env.reset(seed=0)
    assert obs.shape == (SIZE, SIZE, 3) and obs.dtype == np.uint8 and isinstance(info, dict)
    for action in range(6):
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs)
        assert isinstance(reward, float) and -1.0 <= reward <= 1.0
        assert terminated is False and truncated is False
    obs2, _ = env.reset()
    assert obs2.shape == obs.shape
    env.close()


def test_string_form_and_render(kwargs) -> None:
    env = gym.make(f"rad_env:{ENV_ID}", render_mode="rgb_array", **kwargs)
    obs, _ = env.reset(seed=1)
    np.testing.assert_array_equal(env.render(), obs)
    obs, *_ = env.step(1)
    np.testing.assert_array_equal(env.render(), obs)
    env.close()


def test_context_as_frames_and_startframes(dream_files) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 4, SIZE, SIZE, 3), dtype=np.uint8)
    env = gym.make(ENV_ID, checkpoint=str(dream_files["checkpoint"]), context=frames, device="cpu")
    obs, _ = env.reset(seed=0)
    assert any(np.array_equal(obs, f[-1]) for f in frames)  # the first observation is real
    env.close()
    starts = StartFrames(frames, np.full((2, 4), 6))
    env = gym.make(ENV_ID, checkpoint=str(dream_files["checkpoint"]), context=starts, device="cpu")
    env.reset(seed=0)
    env.step(0)
    env.close()


def test_gymnasium_env_checker(kwargs) -> None:
    from gymnasium.utils.env_checker import check_env

    env = gym.make(ENV_ID, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker reports problems as warnings
        warnings.filterwarnings("ignore", message="RADConfig: dim")  # the micro test model is narrow on purpose
        check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_sb3_env_checker(kwargs) -> None:
    from stable_baselines3.common.env_checker import check_env

    env = gym.make(ENV_ID, **kwargs)
    check_env(env.unwrapped, warn=True)
    env.close()


# ------------------------------------------------------------------------------------------ seeding


def test_same_seed_same_frames(kwargs) -> None:
    env = gym.make(ENV_ID, **kwargs)
    actions = [1, 2, 1, 5, 3]
    a = rollout(env, 7, actions)
    b = rollout(env, 7, actions)
    np.testing.assert_array_equal(a, b)
    other = gym.make(ENV_ID, **kwargs)  # a fresh env (and model) too
    np.testing.assert_array_equal(a, rollout(other, 7, actions))
    c = rollout(env, 8, actions)
    assert not np.array_equal(a[1:], c[1:])  # another seed dreams differently
    env.close()
    other.close()


def test_vector_env_matches_single_envs(kwargs) -> None:
    n, seed, steps = 3, 11, 8
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 6, (steps, n))
    venv = DreamVectorEnv(n, MEMORY_MAZE_SPEC, **kwargs)
    obs, _ = venv.reset(seed=seed)
    batched = [obs]
    for a in actions:
        obs, *_ = venv.step(a)
        batched.append(obs)
    batched = np.stack(batched, 1)  # (n, steps + 1, H, W, 3)
    venv.close()
    env = DreamEnv(MEMORY_MAZE_SPEC, **kwargs)
    for i in range(n):
        single = rollout(env, seed + i, actions[:, i])
        np.testing.assert_array_equal(single[0], batched[i, 0])  # same start segment
        diff = np.abs(single.astype(int) - batched[i].astype(int))
        assert diff.mean() < 0.05 and diff.max() <= 2, (i, diff.mean(), diff.max())  # batching rounding only
    env.close()


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_compiled_frame_pass_dreams_the_same_frames(kwargs, amp: str) -> None:
    """compile=True (torch.compile of the blocks' frame pass) changes speed, not the dream, in float32 and
    in bf16 autocast."""
    n, seed, steps = 1, 5, 3  # batch 1: two graphs to compile (denoise, commit)
    actions = np.random.default_rng(1).integers(0, 6, (steps, n))
    runs = {}
    for compiled in (False, True):
        venv = DreamVectorEnv(n, MEMORY_MAZE_SPEC, compile=compiled, amp=amp, **kwargs)
        blocks = venv.core.model.dit.blocks
        assert all(getattr(blk, "frame_pass_compiled", False) == compiled for blk in blocks)
        assert not compiled or torch._dynamo.config.recompile_limit >= FRAME_PASS_GRAPHS  # no silent eager
        obs, _ = venv.reset(seed=seed)
        frames = [obs]
        for a in actions:
            obs, *_ = venv.step(a)
            frames.append(obs)
        runs[compiled] = np.stack(frames)
        venv.close()
    diff = np.abs(runs[True].astype(int) - runs[False].astype(int))
    mean_bound, max_bound = (0.05, 2) if amp == "none" else (0.25, 4)  # measured: 0.00002 / 1 and 0.05 / 2
    assert diff.mean() < mean_bound and diff.max() <= max_bound, (diff.mean(), diff.max())  # rounding only


def test_bf16_autocast_dreams_nearly_the_float32_frames(kwargs) -> None:
    """``amp`` reaches the model: bf16 autocast changes the frames by rounding, not the dream; a bad value is
    refused when the env is built."""
    seed, actions = 3, np.random.default_rng(2).integers(0, 6, (4, 2))
    runs = {}
    for amp in ("none", "bf16"):
        venv = DreamVectorEnv(2, MEMORY_MAZE_SPEC, amp=amp, **kwargs)
        assert venv.core.amp == amp
        obs, _ = venv.reset(seed=seed)
        frames = [obs] + [venv.step(a)[0] for a in actions]
        runs[amp] = np.stack(frames).astype(int)
        venv.close()
    diff = np.abs(runs["bf16"] - runs["none"])
    assert diff[0].max() == 0  # the start frames are real
    assert 0 < diff.mean() < 1.0, diff.mean()
    with pytest.raises(ValueError, match="amp must be auto, bf16 or none"):
        DreamVectorEnv(1, MEMORY_MAZE_SPEC, amp="fp16", **kwargs)


def test_make_vec_vector_entry_point(kwargs) -> None:
    venv = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", **kwargs)
    assert isinstance(venv.unwrapped, DreamVectorEnv)
    assert venv.num_envs == 2 and venv.single_action_space == gym.spaces.Discrete(6)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (2, SIZE, SIZE, 3) and obs.dtype == np.uint8
    obs, rewards, terminated, truncated, _ = venv.step(np.array([1, 2]))
    assert obs.shape == (2, SIZE, SIZE, 3) and rewards.shape == terminated.shape == truncated.shape == (2,)
    assert venv.observation_space.contains(obs)
    venv.close()


# ------------------------------------------------------------------------------------------ autoreset


def test_autoreset_next_step_truncation(kwargs) -> None:
    venv = DreamVectorEnv(2, MEMORY_MAZE_SPEC, max_episode_steps=3, **kwargs)
    venv.reset(seed=0)
    for t in range(1, 4):
        obs, rewards, terminated, truncated, infos = venv.step(np.array([1, 1]))
        assert not terminated.any()
        assert truncated.tolist() == [t == 3, t == 3]
    # next step: both envs restart from a real segment, with zero reward and no termination
    obs, rewards, terminated, truncated, _ = venv.step(np.array([1, 1]))
    assert rewards.tolist() == [0.0, 0.0] and not terminated.any() and not truncated.any()
    starts = venv.core.starts.frames[:, -1]
    for i in range(2):
        assert any(np.array_equal(obs[i], s) for s in starts)
    obs, _, _, truncated, _ = venv.step(np.array([1, 1]))
    assert not truncated.any() and venv.core.steps.tolist() == [1, 1]
    venv.close()


def test_autoreset_same_step_and_termination(kwargs) -> None:
    venv = DreamVectorEnv(2, MEMORY_MAZE_SPEC, max_episode_steps=2, autoreset_mode="SameStep", **kwargs)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    venv.reset(seed=0)
    obs, _, terminated, truncated, infos = venv.step(np.array([1, 2]))
    assert not (terminated | truncated).any() and "final_obs" not in infos
    obs, _, terminated, truncated, infos = venv.step(np.array([1, 2]))
    assert truncated.all() and not terminated.any()
    assert infos["_final_obs"].all() and infos["final_obs"].shape == (2,)  # every env ended at once
    assert all(f.shape == (SIZE, SIZE, 3) and f.dtype == np.uint8 for f in infos["final_obs"])
    starts = venv.core.starts.frames[:, -1]
    assert all(any(np.array_equal(obs[i], s) for s in starts) for i in range(2))  # already reset
    assert venv.core.steps.tolist() == [0, 0]
    venv.core.termination_threshold = -1.0  # force the model to "terminate"
    obs, _, terminated, truncated, infos = venv.step(np.array([0, 0]))
    assert terminated.all() and not truncated.any() and infos["_final_obs"].all()
    venv.close()


def test_sb3_vec_env_autoreset(kwargs) -> None:
    venv = DreamSB3VecEnv(2, max_episode_steps=2, **kwargs)
    venv.seed(3)
    first = obs = venv.reset()
    assert obs.shape == (2, SIZE, SIZE, 3)
    obs, rewards, dones, infos = venv.step(np.array([1, 3]))
    assert rewards.dtype == np.float32 and not dones.any() and infos == [{"refused": False}, {"refused": False}]
    obs, rewards, dones, infos = venv.step(np.array([1, 3]))
    assert dones.all()
    for info in infos:  # SB3 turns it into a tensor to bootstrap the truncated episode's value
        assert info["terminal_observation"].shape == (SIZE, SIZE, 3) and info["TimeLimit.truncated"] is True
        assert torch.as_tensor(info["terminal_observation"]).dtype == torch.uint8
    again = DreamSB3VecEnv(2, max_episode_steps=2, **kwargs)
    again.seed(3)
    np.testing.assert_array_equal(again.reset(), first)  # seeds apply to the next reset
    venv.close()
    again.close()


# ------------------------------------------------------------------------------------------ errors


def test_missing_checkpoint_file(tmp_path, dream_files) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        gym.make(ENV_ID, checkpoint=str(tmp_path / "nope.pt"), context=str(dream_files["context"]), device="cpu")


def test_garbage_checkpoint_file(tmp_path, dream_files) -> None:
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"this is not a checkpoint\x00\x01")
    with pytest.raises(CheckpointError, match="not a readable"):
        gym.make(ENV_ID, checkpoint=str(bad), context=str(dream_files["context"]), device="cpu")


def test_incompatible_checkpoint(dream_files) -> None:
    with pytest.raises(CheckpointError, match="incompatible.*minecraft"):
        gym.make(ENV_ID, checkpoint=str(dream_files["minecraft"]), context=str(dream_files["context"]), device="cpu")


def test_minecraft_env(dream_files) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint is shipped"):
        gym.make("RAD-Minecraft-v0")
    frames = np.random.default_rng(0).integers(0, 256, (1, 2, SIZE, SIZE, 3), dtype=np.uint8)
    env = gym.make("RAD-Minecraft-v0", checkpoint=str(dream_files["minecraft"]), context=frames, device="cpu")
    assert env.action_space == gym.spaces.Discrete(4) and env.spec.max_episode_steps == MINECRAFT_SPEC.max_episode_steps
    env.reset(seed=0)
    env.step(3)
    with pytest.raises(ValueError, match="invalid action"):
        env.step(4)
    env.close()


def test_shipped_default() -> None:
    from rad_env.envs.context import default_assets_dir

    names = (MEMORY_MAZE_SPEC.default_checkpoint, MEMORY_MAZE_SPEC.default_context)
    if not all((default_assets_dir() / name).exists() for name in names):
        pytest.skip("the shipped default checkpoint/start frames are not installed")
    env = gym.make(ENV_ID, device="cpu")
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(1)
    assert obs.shape == (SIZE, SIZE, 3)
    env.close()


def test_missing_shipped_default_says_how_to_train(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr("rad_env.envs.core.default_assets_dir", lambda: tmp_path)
    with pytest.raises(CheckpointError, match="rad_env.train"):
        gym.make(ENV_ID)


@pytest.mark.parametrize("action", [6, -1, 1.5, "1", None, np.array([1, 2])])
def test_invalid_actions(kwargs, action) -> None:
    env = gym.make(ENV_ID, disable_env_checker=True, **kwargs)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="invalid action"):
        env.step(action)
    env.step(np.int64(2))  # numpy integers are fine
    env.close()


def test_vector_invalid_actions(kwargs) -> None:
    venv = DreamVectorEnv(2, MEMORY_MAZE_SPEC, **kwargs)
    venv.reset(seed=0)
    for bad in (np.array([0, 6]), np.array([-1, 0]), np.array([0.5, 1.0]), np.array([1, 2, 3])):
        with pytest.raises(ValueError):
            venv.step(bad)
    venv.step(np.array([1, 2]))
    venv.close()


def test_bad_context(dream_files) -> None:
    small = np.zeros((1, 2, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="start frames"):
        gym.make(ENV_ID, checkpoint=str(dream_files["checkpoint"]), context=small, device="cpu")
    starts = StartFrames(np.zeros((1, 2, SIZE, SIZE, 3), np.uint8), np.array([[6, 9]]))  # another action set
    with pytest.raises(ValueError, match="another action set"):
        gym.make(ENV_ID, checkpoint=str(dream_files["checkpoint"]), context=starts, device="cpu")
    with pytest.raises(ValueError, match="uint8"):
        gym.make(ENV_ID, checkpoint=str(dream_files["checkpoint"]), context=np.zeros((1, 2, 64, 64, 3)), device="cpu")
