"""HDF5 episode schema: write, read back, validation errors, windows."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from rad_env.data import (MEMORY_MAZE, Batch, Episode, EpisodeStore, EpisodeWriter, FileMeta, SchemaError,
                          EpisodeStreams, Segment, WindowDataset, split_episodes, write_episodes)


def make_meta(frame=(16, 16, 3)) -> FileMeta:
    return FileMeta(source="synthetic", action_set="memory-maze", num_actions=6, frame_shape=frame, seed=3)


def make_episode(steps: int, seed: int = 0, frame=(16, 16, 3)) -> Episode:
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, 6, steps)
    return Episode(
        obs=rng.integers(0, 256, (steps + 1, *frame), dtype=np.uint8),
        action_id=actions,
        action=actions.astype(np.int32),
        reward=(rng.random(steps) < 0.2).astype(np.float32),
        terminated=np.zeros(steps, bool),
        truncated=np.eye(1, steps, steps - 1, dtype=bool)[0],
        extras={"agent_pos": rng.random((steps + 1, 2)).astype(np.float32),
                "maze_layout": np.ones((9, 9), np.uint8)},
        seed=seed,
    )


def test_write_read_round_trip(tmp_path: Path) -> None:
    writer = EpisodeWriter(tmp_path / "w00", make_meta())
    episodes = [make_episode(12, 0), make_episode(7, 1)]
    for episode in episodes:
        writer.write(episode)
    store = EpisodeStore(tmp_path)
    assert [ref.length for ref in store.episodes] == [12, 7]
    assert store.meta == make_meta() and store.problems == []
    for ref, episode in zip(store.episodes, episodes):
        got = store.read_episode(ref, ("obs", "action_id", "reward", "agent_pos", "maze_layout"))
        np.testing.assert_array_equal(got["obs"], episode.obs)
        np.testing.assert_array_equal(got["action_id"], episode.action_id)
        np.testing.assert_array_equal(got["reward"], episode.reward)
        np.testing.assert_array_equal(got["agent_pos"], episode.extras["agent_pos"])
        assert got["maze_layout"].shape == (9, 9)
    with h5py.File(store.episodes[0].file) as f:
        obs = f["episodes/000000/obs"]
        assert obs.chunks == (1, 16, 16, 3) and obs.compression == "gzip"
        assert f["episodes/000000"].attrs["complete"]


def test_resume_skips_partial_and_continues_numbering(tmp_path: Path) -> None:
    writer = EpisodeWriter(tmp_path, make_meta())
    writer.write(make_episode(5))
    (tmp_path / "ep000001.h5.tmp").write_bytes(b"half an episode")  # killed mid-write
    store = EpisodeStore(tmp_path)
    assert len(store) == 1 and any("incomplete" in p for p in store.problems)
    with pytest.raises(FileExistsError, match="resume"):
        EpisodeWriter(tmp_path, make_meta())
    resumed = EpisodeWriter(tmp_path, make_meta(), resume=True)
    assert resumed.next_id == 1 and resumed.removed_partial == ["ep000001.h5.tmp"]
    resumed.write(make_episode(6))
    assert [r.length for r in EpisodeStore(tmp_path).episodes] == [5, 6]


def test_invalid_episode_is_rejected_before_writing(tmp_path: Path) -> None:
    bad = make_episode(5)
    bad.obs = bad.obs.astype(np.float32)
    with pytest.raises(SchemaError, match="obs dtype float32"):
        write_episodes(tmp_path / "x.h5", [bad], make_meta())
    short = make_episode(5)
    short.reward = short.reward[:3]
    with pytest.raises(SchemaError, match=r"reward shape \(3,\)"):
        write_episodes(tmp_path / "x.h5", [short], make_meta())
    wrong_ids = make_episode(5)
    wrong_ids.action_id = wrong_ids.action_id + 6
    with pytest.raises(SchemaError, match="action_id values"):
        write_episodes(tmp_path / "x.h5", [wrong_ids], make_meta())
    assert not list(tmp_path.iterdir())


def test_truncated_and_corrupt_files_give_clear_errors(tmp_path: Path) -> None:
    path = write_episodes(tmp_path / "a.h5", [make_episode(20)], make_meta())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SchemaError, match="truncated or corrupt"):
        EpisodeStore(path)
    skipped = tmp_path / "skip"
    write_episodes(skipped / "good.h5", [make_episode(4)], make_meta())
    (skipped / "bad.h5").write_bytes(data[:100])
    store = EpisodeStore(skipped, on_error="skip")
    assert len(store) == 1 and any("bad.h5" in p for p in store.problems)


def test_schema_violations_in_file(tmp_path: Path) -> None:
    path = write_episodes(tmp_path / "a.h5", [make_episode(5)], make_meta())
    with h5py.File(path, "a") as f:
        del f["episodes/000000/reward"]
    with pytest.raises(SchemaError, match=r"missing datasets \['reward'\]"):
        EpisodeStore(path)
    path = write_episodes(tmp_path / "b.h5", [make_episode(5)], make_meta())
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(SchemaError, match="schema_version 99"):
        EpisodeStore(path)
    path = write_episodes(tmp_path / "c.h5", [make_episode(5)], make_meta())
    with h5py.File(path, "a") as f:
        del f["episodes/000000"].attrs["complete"]
    with pytest.raises(SchemaError, match="no complete episodes"):
        EpisodeStore(path)
    other = tmp_path / "mixed"
    write_episodes(other / "a.h5", [make_episode(5)], make_meta())
    write_episodes(other / "b.h5", [make_episode(5, frame=(8, 8, 3))], make_meta((8, 8, 3)))
    with pytest.raises(SchemaError, match="differ"):
        EpisodeStore(other)


def test_windows_align_actions_rewards_and_frames(tmp_path: Path) -> None:
    episodes = [make_episode(9, 0), make_episode(4, 1)]
    write_episodes(tmp_path / "a.h5", episodes, make_meta())
    store = EpisodeStore(tmp_path / "a.h5")
    dataset = WindowDataset(store, length=4, stride=2, extras=("agent_pos",))
    # 10 frames -> starts 0,2,4,6 ; 5 frames -> start 0
    assert dataset.index == [(0, 0), (0, 2), (0, 4), (0, 6), (1, 0)]
    first, later = dataset[0], dataset[2]
    assert isinstance(first, Segment)
    assert first.frames.shape == (4, 16, 16, 3) and first.frames.dtype == np.uint8
    assert first.prev_actions[0] == MEMORY_MAZE.null_action and first.rewards[0] == 0
    assert first.is_first.tolist() == [True, False, False, False]
    ep = episodes[0]
    np.testing.assert_array_equal(later.frames, ep.obs[4:8])
    np.testing.assert_array_equal(later.prev_actions, ep.action_id[3:7])
    np.testing.assert_array_equal(later.rewards, ep.reward[3:7])
    np.testing.assert_array_equal(later.extras["agent_pos"], ep.extras["agent_pos"][4:8])
    np.testing.assert_array_equal(first.prev_actions[1:], ep.action_id[:3])
    with pytest.raises(ValueError, match="no window of 20 frames"):
        WindowDataset(store, length=20)


def test_episode_streams_walk_whole_episodes_chunk_after_chunk(tmp_path: Path) -> None:
    """Row i of each batch continues row i of the previous batch (the next frames of the same episode)
    until the episode's last full chunk, then starts another episode (is_first on its first frame)."""
    episodes = [make_episode(12, 0), make_episode(8, 1), make_episode(2, 2)]  # 13, 9, 3 frames
    write_episodes(tmp_path / "a.h5", episodes, make_meta())
    store = EpisodeStore(tmp_path / "a.h5")
    streams = EpisodeStreams(store, length=4, batch_size=3, seed=0, extras=("agent_pos",))
    assert streams.episodes == [0, 1]  # episode 2 holds no chunk of 4 frames
    obs = [ep.obs for ep in episodes]
    for _ in range(12):
        before = list(streams._rows)
        batch = next(streams)
        assert batch.frames.shape == (3, 4, 16, 16, 3) and batch.extras["agent_pos"].shape == (3, 4, 2)
        for i, (e, start) in enumerate(before):
            fits = start + 4 <= len(obs[e])
            if fits:  # continues the episode where the previous batch left it
                np.testing.assert_array_equal(batch.frames[i].numpy(), obs[e][start:start + 4])
                assert bool(batch.is_first[i, 0]) == (start == 0)
            else:  # the tail (13 % 4 frames) is skipped: a new episode from its first frame
                assert bool(batch.is_first[i, 0])
                e2 = streams._rows[i][0]
                np.testing.assert_array_equal(batch.frames[i].numpy(), obs[e2][:4])
            assert not batch.is_first[i, 1:].any()
    with pytest.raises(ValueError, match="no episode holds a chunk of 20 frames"):
        EpisodeStreams(store, length=20, batch_size=2)


def test_dataset_works_in_dataloader_workers(tmp_path: Path) -> None:
    import torch

    write_episodes(tmp_path / "a.h5", [make_episode(30, i) for i in range(3)], make_meta())
    dataset = WindowDataset(EpisodeStore(tmp_path / "a.h5"), length=8)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, shuffle=True,
                                         collate_fn=Batch.collate)
    batches = list(loader)
    assert all(isinstance(b, Batch) for b in batches)
    assert sum(len(b.frames) for b in batches) == len(dataset) == 9
    assert batches[0].frames.shape[1:] == (8, 16, 16, 3)


def test_split_episodes() -> None:
    train, held = split_episodes(10, 0.2, seed=1)
    assert len(held) == 2 and sorted(train + held) == list(range(10))
    assert split_episodes(10, 0.2, seed=1) == (train, held)
    assert split_episodes(1, 0.5) == ([0], [])


def test_action_ids_by_name() -> None:
    assert MEMORY_MAZE.ids("forward", "turn_left", "turn_right") == (1, 2, 3)
    assert MEMORY_MAZE.ids() == ()
    with pytest.raises(ValueError, match="no action 'jump'"):
        MEMORY_MAZE.ids("forward", "jump")
