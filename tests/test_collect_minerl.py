"""The MineRL recorder against a small fake env with MineRL's API (tests only), and the missing-MineRL error."""

from __future__ import annotations

import functools
import importlib.util
import json
from collections import OrderedDict

import numpy as np
import pytest

from collect.import_minerl import map_actions
from collect.record import RecordConfig, RecordError, main, record
from collect.sources import MINERL_INSTALL_HINT, MineRLSource
from rad_env.data import EpisodeStore, walk_action_vector

MINERL_INSTALLED = importlib.util.find_spec("minerl") is not None


class FakeActionSpace:
    """MineRL 0.4-style Dict action space: ``noop()`` and ``spaces``."""

    spaces = OrderedDict(attack="Discrete(2)", back="Discrete(2)", camera="Box(low=-180.0, high=180.0, shape=(2,))",
                         forward="Discrete(2)", jump="Discrete(2)", left="Discrete(2)", place="Enum(dirt,none)",
                         right="Discrete(2)", sneak="Discrete(2)", sprint="Discrete(2)")

    def noop(self):
        action = OrderedDict((key, 0) for key in self.spaces)
        action["camera"] = np.zeros(2, np.float32)
        action["place"] = "none"
        return action


class FakeMineRLEnv:
    """Mimics MineRLNavigate-v0: dict actions, ``{"pov", "compass"}`` obs, old gym step API."""

    def __init__(self, pov_size: int = 128, goal_after: int = 8, location: bool = False) -> None:
        self.action_space = FakeActionSpace()
        self.pov_size, self.goal_after, self.location = pov_size, goal_after, location
        self.seeds: list[int] = []
        self.closed = False

    def seed(self, seed: int) -> None:
        self.seeds.append(seed)

    def reset(self):
        self.t, self.yaw, self.walked = 0, 0.0, 0
        self.x, self.z = 10.5, -3.5
        return self._obs()

    def _obs(self):
        pov = np.zeros((self.pov_size, self.pov_size, 3), np.uint8)
        pov[0::2, 0::2] = 4 * (self.walked % 50)  # a 2x2 pattern: its block mean is a quarter of this value
        pov[..., 2] = 200
        obs = {"pov": pov, "compass": {"angle": np.array(self.yaw, np.float32)}}
        if self.location:  # MineRL's location_stats handler (numpy scalars)
            obs["location_stats"] = {"xpos": np.array(self.x), "ypos": np.array(64.0), "zpos": np.array(self.z),
                                     "yaw": np.array(self.yaw), "pitch": np.array(0.0)}
        return obs

    def step(self, action):
        assert set(action) == set(self.action_space.spaces), sorted(action)
        assert np.asarray(action["camera"]).shape == (2,)
        self.t += 1
        self.yaw += float(action["camera"][1])
        self.walked += int(action["forward"])
        move = int(action["forward"]) - int(action["back"])
        self.x -= move * np.sin(np.radians(self.yaw))  # Minecraft: yaw 0 faces +z, yaw 90 faces -x
        self.z += move * np.cos(np.radians(self.yaw))
        done = self.t >= self.goal_after
        return self._obs(), 100.0 if done else 0.0, done, {}

    def close(self) -> None:
        self.closed = True


def _record(tmp_path, steps: int, goal_after: int, name: str):
    out = tmp_path / name
    cfg = RecordConfig(env="minerl-navigate", out=str(out), episodes=2, steps=steps, seed=3, progress=False,
                       policy_kwargs={"probs": [0.1, 0.4, 0.25, 0.25]})
    summary = record(cfg, env_factory=functools.partial(FakeMineRLEnv, goal_after=goal_after))
    assert summary["problems"] == [], summary["problems"]
    return out, summary


def test_minerl_recorder_with_fake_env(tmp_path):
    out, summary = _record(tmp_path, steps=12, goal_after=8, name="nav")
    assert summary["episodes_recorded"] == 2 and summary["steps"] == 16
    store = EpisodeStore(out)
    meta = store.meta
    assert (meta.source, meta.action_set, meta.num_actions, tuple(meta.frame_shape)) == \
        ("minerl-navigate", "minecraft", 4, (64, 64, 3))
    space = json.loads(meta.action_space)
    assert set(space["keys"]) == set(FakeActionSpace.spaces) and space["from_action_id"]["2"]["camera_pitch_yaw"] == [0, -20]
    ids_seen = set()
    for ref in store.episodes:
        assert ref.length == 8  # the env ended the episode (goal reached) before --steps
        group = store.group(ref)
        ids = group["action_id"][()]
        native = {key: group["action"][key][()] for key in group["action"]}
        assert set(native) == set(FakeActionSpace.spaces)
        assert native["camera"].shape == (8, 2) and native["camera"].dtype == np.float32
        assert native["place"].dtype.kind == "S" and (native["place"] == b"none").all()
        yaw = native["camera"][:, 1]
        assert np.array_equal(yaw, np.select([ids == 2, ids == 3], [-20.0, 20.0], 0.0))
        assert np.array_equal(native["forward"], (ids == 1).astype(native["forward"].dtype))
        assert np.array_equal(native["jump"], native["forward"])
        assert (native["camera"][:, 0] == 0).all() and not native["attack"].any()
        assert np.array_equal(map_actions(native), ids)  # the importer's rule inverts the recorder's mapping
        ids_seen |= set(ids.tolist())
        obs = group["obs"][()]
        assert obs.shape == (9, 64, 64, 3)
        walked = np.concatenate([[0], np.cumsum(ids == 1)])
        assert np.array_equal(obs[:, 5, 7, 0], (walked % 50).astype(np.uint8))  # 2x2 block mean of 4*w and 0
        assert (obs[..., 2] == 200).all()
        compass = group["compass_angle"][()]
        assert np.allclose(compass, np.concatenate([[0], np.cumsum(yaw)]))
        assert group["reward"][-1] == 100 and group["terminated"][-1] and not group["truncated"][()].any()
    assert ids_seen >= {1, 2, 3}


def test_minerl_recorder_walker_actions_and_positions(tmp_path):
    """--minerl-actions minecraft-walk with the RAD authors' walker: native keys and camera follow the
    ids, and location_stats become per-frame x/y/z/yaw extras (frame 0 from the reset observation)."""
    out = tmp_path / "walk"
    cfg = RecordConfig(env="minerl-navigate", out=str(out), episodes=2, steps=40, seed=5, progress=False,
                       policy="walker", minerl_actions="minecraft-walk")
    summary = record(cfg, env_factory=functools.partial(FakeMineRLEnv, goal_after=100, location=True))
    assert summary["problems"] == [], summary["problems"]
    store = EpisodeStore(out)
    assert (store.meta.action_set, store.meta.num_actions) == ("minecraft-walk", 18)
    for ref in store.episodes:
        group = store.group(ref)
        ids = group["action_id"][()]
        native = {key: group["action"][key][()] for key in group["action"]}
        vectors = np.array([walk_action_vector(i) for i in ids])
        assert np.array_equal(native["forward"], vectors[:, 0]) and np.array_equal(native["back"], vectors[:, 1])
        assert np.array_equal(native["jump"], vectors[:, 2])
        assert np.array_equal(native["camera"][:, 1], 20.0 * vectors[:, 3])
        assert all(np.all(ids[i:i + 5] == ids[i]) for i in range(0, 40, 5))  # the walker holds each action 5 steps
        assert vectors[:, 0].mean() > 0.6 and (vectors[:, 3] != 0).any()
        x, z, yaw = group["x"][()], group["z"][()], group["yaw"][()]
        assert x.shape == z.shape == yaw.shape == (41,) and (group["y"][()] == 64).all()
        assert (x[0], z[0], yaw[0]) == (10.5, -3.5, 0.0)
        assert np.allclose(yaw, np.concatenate([[0], np.cumsum(native["camera"][:, 1])]))
        step = np.hypot(np.diff(x), np.diff(z))
        assert np.allclose(step, vectors[:, 0], atol=1e-5)  # moved one block per forward step
    with pytest.raises(RecordError, match="walker.*not available|not available.*minecraft-walk"):
        record(RecordConfig(env="minerl-navigate", out=str(tmp_path / "x"), episodes=1, steps=3, policy="walker",
                            progress=False), env_factory=FakeMineRLEnv)


def test_minerl_recorder_truncates_at_steps(tmp_path):
    out, _ = _record(tmp_path, steps=5, goal_after=50, name="short")
    store = EpisodeStore(out)
    for ref in store.episodes:
        group = store.group(ref)
        assert ref.length == 5
        assert group["truncated"][-1] and not group["terminated"][()].any()


def test_minerl_source_seeds_and_closes():
    env = FakeMineRLEnv(pov_size=64, goal_after=3)
    source = MineRLSource(env_factory=lambda: env)
    policy = source.make_policy("random", seed=0)
    episode = source.record(policy, 10, seed=11)
    assert env.seeds == [11] and episode.length == 3 and episode.obs.shape == (4, 64, 64, 3)
    with pytest.raises(ValueError, match="not available"):
        source.make_policy("explore")
    with pytest.raises(ValueError, match="invalid MINECRAFT action id"):
        source.dict_action(4)
    source.close()
    assert env.closed


def test_minerl_env_without_needed_keys():
    env = FakeMineRLEnv()
    env.action_space.spaces = OrderedDict(forward="Discrete(2)")
    env.action_space.noop = lambda: OrderedDict(forward=0)
    with pytest.raises(ValueError, match="lacks keys"):
        MineRLSource(env_factory=lambda: env).open()


@pytest.mark.skipif(MINERL_INSTALLED, reason="MineRL is installed")
def test_missing_minerl_gives_install_hint(tmp_path, capsys):
    with pytest.raises(ImportError, match=r"pip install -e '\.\[minerl\]'"):
        MineRLSource()
    assert "JDK" in MINERL_INSTALL_HINT or "Java" in MINERL_INSTALL_HINT
    status = main(["--env", "minerl-navigate", "--episodes", "1", "--out", str(tmp_path / "nav"), "--no-progress"])
    assert status == 2
    assert "pip install -e '.[minerl]'" in capsys.readouterr().err
    assert not (tmp_path / "nav").exists()  # failed before creating anything
