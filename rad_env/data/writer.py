"""Write episodes to HDF5 so that a kill never loses a completed episode.

Each episode goes to its own file: written to ``<name>.h5.tmp``, flushed and marked complete, then
atomically renamed to ``<name>.h5``. A file with the final name is therefore always complete;
``*.tmp`` files are the episodes that were in flight when a process died. Every array dataset carries
per-chunk Fletcher-32 checksums, so later corruption on disk is detected when it is read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import numpy as np

from .schema import EPISODES_GROUP, Episode, FileMeta

TMP_SUFFIX = ".tmp"
_EPISODE_FILE = re.compile(r"^ep(\d+)\.h5$")


def _create(group: h5py.Group, name: str, value, *, per_frame: bool = False, compression: str | None = None,
            level: int | None = None) -> None:
    """One dataset with a Fletcher-32 checksum per chunk (HDF5 checks it on every read), so flipped
    bytes raise an error instead of reading back as wrong frames or rewards. ``per_frame``: chunked
    one frame per chunk and compressed. Scalars cannot be chunked and get no checksum."""
    value = np.asarray(value)
    if value.ndim == 0 or value.size == 0:
        group.create_dataset(name, data=value)
    elif per_frame:
        group.create_dataset(name, data=value, chunks=(1, *value.shape[1:]), compression=compression,
                             compression_opts=level, fletcher32=True)
    else:
        group.create_dataset(name, data=value, fletcher32=True)


def _write_group(group: h5py.Group, episode: Episode, compression: str | None, level: int | None) -> None:
    obs = np.ascontiguousarray(episode.obs, dtype=np.uint8)
    _create(group, "obs", obs, per_frame=True, compression=compression, level=level)
    _create(group, "action_id", np.asarray(episode.action_id, dtype=np.int64))
    if isinstance(episode.action, dict):
        native = group.create_group("action")
        for key, value in episode.action.items():
            _create(native, key, value)
    else:
        _create(group, "action", episode.action)
    _create(group, "reward", np.asarray(episode.reward, dtype=np.float32))
    _create(group, "terminated", np.asarray(episode.terminated, dtype=bool))
    _create(group, "truncated", np.asarray(episode.truncated, dtype=bool))
    for key, value in episode.extras.items():
        value = np.asarray(value)
        per_frame = value.ndim >= 3 and value.shape[0] == obs.shape[0]
        _create(group, key, value, per_frame=per_frame, compression=compression, level=level)
    group.attrs["length"] = episode.length
    group.attrs["seed"] = int(episode.seed)


def write_episodes(path: str | os.PathLike, episodes: list[Episode], meta: FileMeta, *,
                   first_id: int = 0, compression: str | None = "gzip", level: int | None = 4) -> Path:
    """Write ``episodes`` into one new HDF5 file at ``path``, atomically.

    Every episode is validated first; nothing is written if one is invalid.
    """
    path = Path(path)
    for i, episode in enumerate(episodes):
        episode.validate(meta, where=f"{path.name}: episode {first_id + i}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with h5py.File(tmp, "w") as f:
        f.attrs.update(meta.to_attrs())
        root = f.create_group(EPISODES_GROUP)
        for i, episode in enumerate(episodes):
            group = root.create_group(f"{first_id + i:06d}")
            _write_group(group, episode, compression, level)
            f.flush()
            group.attrs["complete"] = True
        f.flush()
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


class EpisodeWriter:
    """Writes one worker's episodes as ``<directory>/ep<seq>.h5``, one complete file each.

    With ``resume=True`` the files of an earlier run are kept, leftover ``*.tmp`` files (episodes
    in flight when it died) are deleted and numbering continues after the last complete episode.
    """

    def __init__(self, directory: str | os.PathLike, meta: FileMeta, *, resume: bool = False,
                 compression: str | None = "gzip", level: int | None = 4) -> None:
        self.directory = Path(directory)
        self.meta = meta
        self.compression, self.level = compression, level
        existing = self.completed_ids(self.directory)
        if existing and not resume:
            raise FileExistsError(
                f"{self.directory} already holds {len(existing)} episode(s); pass resume=True "
                "(--resume) to continue it or choose another output")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.removed_partial = [p.name for p in self.directory.glob("*" + TMP_SUFFIX)]
        for name in self.removed_partial:
            (self.directory / name).unlink()
        self.next_id = max(existing, default=-1) + 1
        self.num_existing = len(existing)

    @staticmethod
    def completed_ids(directory: str | os.PathLike) -> list[int]:
        directory = Path(directory)
        if not directory.is_dir():
            return []
        ids = []
        for p in directory.iterdir():
            match = _EPISODE_FILE.match(p.name)
            if match:
                ids.append(int(match.group(1)))
        return sorted(ids)

    def write(self, episode: Episode) -> Path:
        path = write_episodes(self.directory / f"ep{self.next_id:06d}.h5", [episode], self.meta,
                              first_id=self.next_id, compression=self.compression, level=self.level)
        self.next_id += 1
        return path
