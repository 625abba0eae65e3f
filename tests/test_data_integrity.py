"""Corruption on disk: per-chunk checksums in new episode files, errors naming file and episode,
and verifying/skipping corrupt episodes (rad_env.data)."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

from rad_env.data import CorruptEpisodeError, Episode, EpisodeStore, FileMeta, SchemaError, write_episodes


def make_meta() -> FileMeta:
    return FileMeta(source="synthetic", action_set="memory-maze", num_actions=6, frame_shape=(16, 16, 3))


def make_episode(steps: int, seed: int = 0) -> Episode:
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, 6, steps)
    return Episode(obs=rng.integers(0, 256, (steps + 1, 16, 16, 3), dtype=np.uint8), action_id=actions,
                   action=actions.astype(np.int32), reward=rng.random(steps).astype(np.float32),
                   terminated=np.zeros(steps, bool), truncated=np.zeros(steps, bool),
                   extras={"agent_pos": rng.random((steps + 1, 2)).astype(np.float32),
                           "maze_layout": np.ones((9, 9), np.uint8)}, seed=seed)


def flip_chunk_bytes(path: Path, dataset: str, chunk: int = 0, count: int = 8) -> None:
    """Invert ``count`` bytes in the middle of chunk ``chunk`` of ``dataset``, as a failing disk would."""
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(chunk)
    offset = info.byte_offset + info.size // 2 - count // 2
    with open(path, "r+b") as handle:
        handle.seek(offset)
        data = bytearray(handle.read(count))
        handle.seek(offset)
        handle.write(bytes(b ^ 0xFF for b in data))


@pytest.fixture
def two_episodes(tmp_path: Path) -> Path:
    return write_episodes(tmp_path / "a.h5", [make_episode(20, 0), make_episode(6, 1)], make_meta())


def test_new_files_store_per_chunk_checksums(two_episodes: Path) -> None:
    with h5py.File(two_episodes) as f:
        group = f["episodes/000000"]
        obs = group["obs"]
        assert obs.fletcher32 and obs.chunks == (1, 16, 16, 3) and obs.compression == "gzip"
        for key in ("action_id", "action", "reward", "terminated", "truncated", "agent_pos", "maze_layout"):
            assert group[key].fletcher32, key


def test_flipped_frame_bytes_name_file_and_episode(two_episodes: Path) -> None:
    flip_chunk_bytes(two_episodes, "episodes/000000/obs", chunk=5)
    store = EpisodeStore(two_episodes)  # the layout is intact: opening does not read the frames
    bad, good = store.episodes
    assert store.read(bad, "obs", 0, 5).shape == (5, 16, 16, 3)  # chunks before the damage still read
    with pytest.raises(CorruptEpisodeError) as caught:
        store.read(bad, "obs", 4, 8)
    message = str(caught.value)
    assert str(two_episodes) in message and "/episodes/000000" in message and "'obs'" in message
    assert caught.value.ref == bad and caught.value.dataset == "obs"
    assert isinstance(caught.value, SchemaError)
    assert store.read(good, "obs").shape == (7, 16, 16, 3)
    store.verify(good)
    with pytest.raises(CorruptEpisodeError, match="000000"):
        store.verify(bad)
    found = store.find_corrupt()
    assert list(found) == [0] and found[0].ref == bad and len(store) == 2  # the store is unchanged


def test_flipped_bytes_in_uncompressed_data_are_caught_by_the_checksum(two_episodes: Path) -> None:
    flip_chunk_bytes(two_episodes, "episodes/000001/reward", count=4)
    store = EpisodeStore(two_episodes)
    with pytest.raises(CorruptEpisodeError, match="'reward'"):
        store.read(store.episodes[1], "reward")


def test_verify_option_raises_or_skips(two_episodes: Path, tmp_path: Path) -> None:
    flip_chunk_bytes(two_episodes, "episodes/000000/obs", chunk=0)
    with pytest.raises(CorruptEpisodeError, match="/episodes/000000"):
        EpisodeStore(two_episodes, verify=True)
    store = EpisodeStore(two_episodes, verify=True, on_error="skip")
    assert [ref.key for ref in store.episodes] == ["000001"]
    assert [ref.key for ref in store.corrupt] == ["000000"]
    assert any("000000" in p and "skipped" in p for p in store.problems)
    only = write_episodes(tmp_path / "only.h5", [make_episode(4)], make_meta())
    flip_chunk_bytes(only, "episodes/000000/obs", chunk=1)
    with pytest.raises(SchemaError, match="no complete episodes"):  # nothing usable left
        EpisodeStore(only, verify=True, on_error="skip")


def test_corrupt_episode_error_survives_pickling(two_episodes: Path) -> None:
    store = EpisodeStore(two_episodes)
    error = CorruptEpisodeError.reading(store.episodes[0], "obs", "filter returned failure")
    again = pickle.loads(pickle.dumps(error))  # DataLoader workers send exceptions to the main process
    assert str(again) == str(error) and again.ref == error.ref and again.dataset == "obs"


def test_intact_files_verify_cleanly(two_episodes: Path) -> None:
    store = EpisodeStore(two_episodes, verify=True)
    assert len(store) == 2 and store.corrupt == [] and store.find_corrupt() == {}
    np.testing.assert_array_equal(store.read(store.episodes[1], "obs"), make_episode(6, 1).obs)
