"""Reliability: a recorder killed with SIGKILL loses nothing it completed, and the batched dream env
survives a stream of invalid actions with clear errors."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rad_env.data import EpisodeStore
from rad_env.envs.context import StartFrames
from rad_env.envs.core import DreamCore
from rad_env.envs.vector import DreamVectorEnv
from rad_env.model import RADConfig, WorldModel

REPO = Path(__file__).resolve().parents[1]
EPISODES, STEPS = 3, 15


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "collect" / "record.py"), "--env", "memory-maze-9x9", "--episodes",
            str(EPISODES), "--steps", str(STEPS), "--workers", "1", "--out", str(out), "--no-progress", *extra]


# ------------------------------------------------------------------------ collector killed mid-run
def test_collector_sigkill_then_resume_loses_nothing(tmp_path):
    out = tmp_path / "mm9"
    shard = out / "w0"
    log = (tmp_path / "first_run.log").open("wb")
    # Own session/process group: the kill reaches the recorder and anything it started.
    proc = subprocess.Popen(record_cmd(out), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not list(shard.glob("ep*.h5")):  # completed episodes only (in-flight ones are *.h5.tmp)
            if proc.poll() is not None:
                pytest.fail(f"recorder exited early ({proc.returncode}): {(tmp_path / 'first_run.log').read_text()}")
            assert time.monotonic() < deadline, "no episode completed within 180 s"
            time.sleep(0.02)
        assert proc.poll() is None, "recorder finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()

    completed = sorted(shard.glob("ep*.h5"))
    assert 1 <= len(completed) < EPISODES, [p.name for p in completed]
    hashes = {p.name: sha256(p) for p in completed}
    for path in completed:  # every file the killed run finished is a complete, valid episode
        store = EpisodeStore(path)
        assert len(store) == 1 and store.problems == []
        episode = store.read_episode(store.episodes[0])
        assert episode["obs"].shape == (STEPS + 1, 64, 64, 3) and episode["action_id"].shape == (STEPS,)
        store.close()
    listed = EpisodeStore(out)  # the directory reads too: a half-written episode is only reported
    assert len(listed) == len(completed)
    assert all("incomplete episode file" in p for p in listed.problems)
    listed.close()

    resumed = subprocess.run(record_cmd(out, "--resume"), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert not list(out.rglob("*.tmp"))
    store = EpisodeStore(out)
    assert len(store) == EPISODES and store.problems == []
    assert [ref.file.name for ref in store.episodes] == [f"ep{i:06d}.h5" for i in range(EPISODES)]
    assert all(ref.length == STEPS for ref in store.episodes)
    store.close()
    assert {name: sha256(shard / name) for name in hashes} == hashes  # finished episodes untouched


# ------------------------------------------------------------------------ dream env under bad input
RANGE = r"\[0, ?6\)"
INTEGER = r"integer"
SHAPE = r"expected 2 action|shape"
BAD_ACTIONS = [
    ("id == num_actions", np.array([0, 6]), RANGE),
    ("NULL_ACTION everywhere", np.array([6, 6]), RANGE),
    ("negative", np.array([1, -1]), RANGE),
    ("huge", np.array([2**40, 0]), RANGE),
    ("list out of range", [7, 7], RANGE),
    ("non-integral float", np.array([1.5, 0.0]), INTEGER),
    ("nan", np.array([np.nan, 1.0]), INTEGER),
    ("too many", np.array([1, 2, 3]), SHAPE),
    ("empty", [], SHAPE),
    ("2-D", np.ones((2, 1), np.int64), SHAPE),
    ("scalar", 1, SHAPE),
    ("strings", ["1", "2"], INTEGER),
    ("one string", "forward", f"{SHAPE}|{INTEGER}"),
    ("None", None, f"{SHAPE}|{INTEGER}"),
    ("list of None", [None, None], INTEGER),
    ("dict", {"a": 1}, f"{SHAPE}|{INTEGER}"),
]


def tiny_vector_env(max_episode_steps: int = 1000) -> DreamVectorEnv:
    torch.manual_seed(0)
    cfg = RADConfig.preset("tiny", dim=32, depth=1, heads=2, mlp_ratio=2.0, memory_slots=2, memory_dim=16,
                           noise_features=16)
    model = WorldModel(cfg).eval()
    with torch.no_grad():
        model.head[-1].bias[3] = -30.0  # never predict termination: episodes only end by truncation
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, cfg.window, 64, 64, 3), dtype=np.uint8)
    actions = np.full((2, cfg.window), cfg.null_action)
    core = DreamCore(model, StartFrames(frames, actions), 2, sampling_steps=1, device="cpu")
    return DreamVectorEnv(core=core, max_episode_steps=max_episode_steps)


def snapshot(env: DreamVectorEnv) -> list:
    return [env.core.frames.copy(), env.core.steps.copy()] + [t.clone() for t in env.core.state.tensors()]


def same(a: list, b: list) -> bool:
    return all(np.array_equal(x, y) if isinstance(x, np.ndarray) else torch.equal(x, y) for x, y in zip(a, b))


def test_dream_vector_env_soak_with_bad_actions():
    env = tiny_vector_env(max_episode_steps=1000)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    state_bytes = env.core.state.nbytes()
    good_steps = 0
    for round_ in range(2):
        for name, bad, pattern in BAD_ACTIONS:
            before = snapshot(env)
            with pytest.raises((ValueError, TypeError)) as info:
                env.step(bad)
            assert re.search(pattern, str(info.value), re.IGNORECASE), f"{name}: unclear error {info.value!r}"
            assert same(before, snapshot(env)), f"{name}: the rejected step changed the env"
            obs, rewards, terminated, truncated, _ = env.step(rng.integers(0, 6, 2))  # still works
            good_steps += 1
            assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.uint8 and np.isfinite(rewards).all()
            assert env.core.state.nbytes() == state_bytes
        env.reset(seed=round_ + 1)
    assert good_steps == 2 * len(BAD_ACTIONS)
    env.close()


def test_bad_actions_rejected_while_an_env_awaits_autoreset():
    env = tiny_vector_env(max_episode_steps=1)
    env.reset(seed=0)
    _, _, _, truncated, _ = env.step(np.array([1, 1]))
    assert truncated.all()  # both envs reset on the next step
    for name, bad, pattern in BAD_ACTIONS:
        with pytest.raises((ValueError, TypeError)) as info:
            env.step(bad)
        assert re.search(pattern, str(info.value), re.IGNORECASE), f"{name}: unclear error {info.value!r}"
    env.close()
