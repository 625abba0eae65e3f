"""Held-out evaluation clips: real frames, the actions that led to them, and how to replay them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..data import EpisodeStore, read_segment

#: Per-frame extras the evaluation uses when the data has them (revisits, replay checks):
#: Memory Maze's agent_pos/agent_dir, Minecraft's x/z/yaw (see :mod:`rad_env.evaluation.places`).
EXTRAS = ("agent_pos", "agent_dir", "x", "z", "yaw")


@dataclass
class Clips:
    """``N`` clips of ``T`` consecutive real frames, each from its own episode.

    ``prev_actions[n, t]`` led to ``frames[n, t]`` (the null action at an episode start);
    ``env_seeds[n]`` is the recorded env seed (-1 if unknown) and ``starts[n]`` the clip's first frame
    in its episode, so ``(env_seeds[n], actions[:starts[n] + t])`` replays frame ``t`` in the real env.
    """

    frames: np.ndarray  # uint8 (N, T, H, W, 3)
    prev_actions: np.ndarray  # int64 (N, T)
    episodes: list[int]
    starts: list[int]
    env_seeds: list[int]
    episode_actions: list[np.ndarray]  # every action of each clip's episode (for replays)
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # (N, T, ...)
    rewards: np.ndarray | None = None  # float32 (N, T): the reward that arrived with each frame

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def length(self) -> int:
        return self.frames.shape[1]

    def head(self, length: int) -> "Clips":
        """The same clips cut to their first ``length`` frames."""
        return replace(self, frames=self.frames[:, :length], prev_actions=self.prev_actions[:, :length],
                       extras={k: v[:, :length] for k, v in self.extras.items()},
                       rewards=None if self.rewards is None else self.rewards[:, :length])


def load_clips(store: EpisodeStore, episodes: list[int], length: int, start: int = 0) -> Clips:
    """The first ``length`` frames (from ``start``) of each of ``episodes`` that is long enough."""
    chosen = [e for e in episodes if store.episodes[e].num_frames >= start + length]
    if not chosen:
        longest = max(store.episodes[e].num_frames for e in episodes) if episodes else 0
        raise ValueError(f"{store.path}: no evaluation episode has {start + length} frames (longest: {longest}); "
                         "lower --context/--horizon or record longer episodes")
    segments, seeds, actions = [], [], []
    for e in chosen:
        ref = store.episodes[e]
        group = store.group(ref)
        extras = [k for k in EXTRAS if k in group]
        segments.append(read_segment(store, ref, start, start + length, extras))
        seeds.append(int(group.attrs.get("seed", -1)))
        actions.append(store.read(ref, "action_id"))
    common = set.intersection(*(set(s.extras) for s in segments))
    return Clips(frames=np.stack([s.frames for s in segments]),
                 prev_actions=np.stack([s.prev_actions for s in segments]),
                 episodes=chosen, starts=[start] * len(chosen), env_seeds=seeds, episode_actions=actions,
                 extras={k: np.stack([s.extras[k] for s in segments]) for k in sorted(common)},
                 rewards=np.stack([s.rewards for s in segments]).astype(np.float32))
