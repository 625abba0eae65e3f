"""Read and validate episode files without loading them whole."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

import h5py
import numpy as np

from .schema import EPISODES_GROUP, REQUIRED_KEYS, FileMeta, SchemaError, check_layout
from .writer import TMP_SUFFIX

#: Frames read at a time by :meth:`EpisodeStore.verify`.
_VERIFY_ROWS = 256


@dataclass(frozen=True)
class EpisodeRef:
    """Where one complete episode lives."""

    file: Path
    key: str  # group name under /episodes
    length: int  # number of steps T (T + 1 frames)

    @property
    def num_frames(self) -> int:
        return self.length + 1


class CorruptEpisodeError(SchemaError):
    """Stored bytes of an episode cannot be read back: a checksum or decompression filter failed
    (bytes changed on disk) or the HDF5 library could not read them. The message names file, episode
    and dataset; ``ref`` is the episode (None if unknown), so a caller can skip it and carry on."""

    def __init__(self, message: str, ref: EpisodeRef | None = None, dataset: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.ref, self.dataset, self.reason = ref, dataset, reason

    @classmethod
    def reading(cls, ref: EpisodeRef, dataset: str, reason: str) -> "CorruptEpisodeError":
        return cls(f"{ref.file}:/{EPISODES_GROUP}/{ref.key}: dataset {dataset!r} cannot be read (corrupt data "
                   f"on disk: {reason}); skip this episode or record it again", ref, dataset, reason)

    def __reduce__(self):  # keep ref/dataset through pickling (DataLoader workers)
        return type(self), (str(self), self.ref, self.dataset, self.reason)


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:  # truncated or not HDF5 at all
        raise SchemaError(f"{path}: cannot be read as HDF5 (truncated or corrupt file?): {exc}") from exc


def _validate_group(group: h5py.Group, meta: FileMeta, where: str) -> int:
    missing = [k for k in REQUIRED_KEYS if k not in group]
    if missing:
        raise SchemaError(f"{where}: missing datasets {missing}")
    steps = check_layout(group, meta, where)
    if int(group.attrs.get("length", steps)) != steps:
        raise SchemaError(f"{where}: attribute length={group.attrs['length']} but obs has {steps + 1} frames")
    return steps


class EpisodeStore:
    """All complete episodes under ``path`` (an HDF5 file or a directory searched recursively).

    Incomplete episodes (``*.h5.tmp`` files, groups not marked complete) are skipped and listed in
    :attr:`problems`. Invalid files raise :class:`SchemaError` naming file and problem, or with
    ``on_error="skip"`` are skipped and listed in :attr:`problems` too.

    Opening checks the layout, not the stored bytes: a read of corrupt bytes raises
    :class:`CorruptEpisodeError` (files written by this rad-env carry per-chunk checksums, so flipped
    bytes are caught). ``verify=True`` reads every episode once at opening (:meth:`verify`; about 10 s
    per 100k frames on one CPU core): a corrupt one then raises, or with ``on_error="skip"`` is left
    out of :attr:`episodes` and listed in :attr:`problems` and :attr:`corrupt`. :meth:`find_corrupt`
    checks without changing the store (episode indices stay as they are).
    """

    def __init__(self, path: str | os.PathLike, *, on_error: Literal["raise", "skip"] = "raise",
                 verify: bool = False) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no episode data at {self.path}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.problems: list[str] = []
        self.episodes: list[EpisodeRef] = []
        self.corrupt: list[EpisodeRef] = []
        self.meta: FileMeta | None = None
        self.seeds: set[int] = set()  # the recording seeds of all files (-1: not recorded)
        self._file_seeds: dict[Path, int] = {}
        self._handles: dict[Path, h5py.File] = {}
        self._pid = os.getpid()
        if self.path.is_dir():
            files = sorted(self.path.rglob("*.h5"))
            self.problems += [f"{p}: incomplete episode file (writer did not finish)"
                              for p in sorted(self.path.rglob("*.h5" + TMP_SUFFIX))]
        else:
            files = [self.path]
        for file in files:
            try:
                self._scan(file)
            except SchemaError as exc:
                if on_error == "raise":
                    raise
                self.problems.append(str(exc))
        if verify:
            found = self.find_corrupt()
            if found and on_error == "raise":
                raise next(iter(found.values()))
            self.corrupt = [self.episodes[i] for i in found]
            self.problems += [f"{exc} (skipped)" for exc in found.values()]
            self.episodes = [ref for i, ref in enumerate(self.episodes) if i not in found]
        if not self.episodes:
            raise SchemaError(f"{self.path}: no complete episodes found"
                              + (f" ({len(self.problems)} problem(s): {self.problems[0]})" if self.problems else ""))

    def _scan(self, file: Path) -> None:
        with _open(file) as f:
            meta = FileMeta.from_attrs(f.attrs, str(file))
            self.seeds.add(meta.seed)
            self._file_seeds[file] = meta.seed
            if self.meta is None:
                self.meta = meta
            elif not self.meta.compatible_with(meta):
                raise SchemaError(f"{file}: action set/frame shape {meta.action_set}/{meta.frame_shape} differ from "
                                  f"the other files' {self.meta.action_set}/{self.meta.frame_shape}")
            if EPISODES_GROUP not in f:
                raise SchemaError(f"{file}: no /{EPISODES_GROUP} group")
            found = []
            for key, group in f[EPISODES_GROUP].items():
                where = f"{file}:/{EPISODES_GROUP}/{key}"
                if not bool(group.attrs.get("complete", False)):
                    self.problems.append(f"{where}: incomplete episode (not marked complete), skipped")
                    continue
                found.append(EpisodeRef(file, key, _validate_group(group, meta, where)))
            self.episodes += found

    # -- reading ---------------------------------------------------------------------------
    def _file(self, path: Path) -> h5py.File:
        if os.getpid() != self._pid:  # forked DataLoader worker: never share HDF5 handles
            self._handles, self._pid = {}, os.getpid()
        handle = self._handles.get(path)
        if handle is None:
            handle = self._handles[path] = _open(path)
        return handle

    def group(self, ref: EpisodeRef) -> h5py.Group:
        return self._file(ref.file)[EPISODES_GROUP][ref.key]

    def read(self, ref: EpisodeRef, key: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` of one dataset of one episode (only those rows are read).

        Raises :class:`CorruptEpisodeError` when the stored bytes cannot be read back."""
        group = self.group(ref)
        if key not in group:
            raise KeyError(f"{ref.file}:/{EPISODES_GROUP}/{ref.key} has no dataset {key!r}")
        try:
            return group[key][start:stop]
        except OSError as exc:  # h5py: "Can't synchronously read data (filter returned failure ...)"
            raise CorruptEpisodeError.reading(ref, key, str(exc)) from exc

    def verify(self, ref: EpisodeRef) -> None:
        """Read every stored byte of one episode (every chunk of every dataset, checksums checked);
        raises :class:`CorruptEpisodeError` naming the first dataset that fails."""
        def check(name: str, node) -> None:
            if not isinstance(node, h5py.Dataset):
                return
            try:
                if node.shape and node.shape[0] > _VERIFY_ROWS:
                    for start in range(0, node.shape[0], _VERIFY_ROWS):
                        node[start:start + _VERIFY_ROWS]
                else:
                    node[()]
            except OSError as exc:
                raise CorruptEpisodeError.reading(ref, name, str(exc)) from exc

        self.group(ref).visititems(check)

    def find_corrupt(self, indices: Iterable[int] | None = None) -> dict[int, CorruptEpisodeError]:
        """:meth:`verify` the episodes ``indices`` (default: all); returns ``{index in episodes: error}``
        for the corrupt ones. The store is left unchanged."""
        found: dict[int, CorruptEpisodeError] = {}
        for i in range(len(self.episodes)) if indices is None else indices:
            try:
                self.verify(self.episodes[i])
            except CorruptEpisodeError as exc:
                found[i] = exc
        return found

    def read_episode(self, ref: EpisodeRef, keys: Iterable[str] = ("obs", "action_id", "reward",
                                                                   "terminated", "truncated")) -> dict[str, np.ndarray]:
        return {key: self.read(ref, key) for key in keys}

    @property
    def num_steps(self) -> int:
        return sum(ref.length for ref in self.episodes)

    @property
    def steps_by_seed(self) -> dict[int, int]:
        """Env steps of the complete episodes per recording seed (-1: not recorded)."""
        steps: dict[int, int] = {}
        for ref in self.episodes:
            seed = self._file_seeds[ref.file]
            steps[seed] = steps.get(seed, 0) + ref.length
        return steps

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def __len__(self) -> int:
        return len(self.episodes)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
