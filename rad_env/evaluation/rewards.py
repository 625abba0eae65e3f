"""Does the dream pay rewards when and only when the real env does? Replays of real reward events.

For each real reward (``reward[t] != 0``; it arrives with frame ``r = t + 1``, which is where the
model's reward head predicts it) the model observes ``context`` real frames ending ``lead`` frames
before ``r``, then dreams frames ``r - lead .. r + tolerance`` from the true actions. The event counts
as *paid* when a dreamed frame within ``tolerance`` frames of ``r`` pays a reward of the same sign (the
head's expected reward at least ``threshold`` in size, as the dream env pays it). *Quiet stretches*
have the same shape around frames with no real reward anywhere in the dreamed span; a stretch counts
as a *false reward* when the dream pays anything in its scored frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import EpisodeStore, read_segment
from .rollout import dream_rollout


@dataclass(frozen=True)
class ReplayCase:
    episode: int
    centre: int  # frame r: where the real reward arrives (or would, in a quiet stretch)
    sign: int  # real reward sign at r (0 for quiet stretches)


def find_cases(store: EpisodeStore, episodes: list[int], context: int, lead: int, tolerance: int,
               quiet_every: int = 50, max_events: int = 64, max_quiet: int = 64) -> tuple[list[ReplayCase], list[ReplayCase]]:
    """Reward events and quiet stretches with room for ``context`` frames before and ``tolerance`` after."""
    events, quiet = [], []
    for e in episodes:
        ref = store.episodes[e]
        reward = np.asarray(store.read(ref, "reward"), np.float64)  # reward[t] arrives with frame t + 1
        frames = len(reward) + 1
        first, last = context + lead, frames - 1 - tolerance  # centres with room on both sides
        for t in np.nonzero(reward)[0]:
            if first <= t + 1 <= last:
                events.append(ReplayCase(e, int(t + 1), int(np.sign(reward[t]))))
        for r in range(first, last + 1, quiet_every):
            span = reward[r - lead - 1:r + tolerance]  # rewards arriving with the dreamed frames r-lead..r+tol
            if not span.any():
                quiet.append(ReplayCase(e, r, 0))
    return events[:max_events], quiet[:max_quiet]


def dream_rewards(model, store: EpisodeStore, cases: list[ReplayCase], context: int, lead: int, tolerance: int,
                  steps: int | None = None, seed: int = 0) -> np.ndarray:
    """Expected dreamed reward (N, lead + tolerance + 1) at frames r - lead .. r + tolerance of each case."""
    segments = [read_segment(store, store.episodes[c.episode], c.centre - lead - context, c.centre + tolerance + 1)
                for c in cases]
    return dream_rollout(model, np.stack([s.frames for s in segments]), np.stack([s.prev_actions for s in segments]),
                         context, steps, seed).rewards


def reward_replay(model, store: EpisodeStore, episodes: list[int], context: int, lead: int = 6, tolerance: int = 2,
                  threshold: float = 0.5, steps: int | None = None, seed: int = 0) -> dict[str, float | int] | None:
    """Paid fraction of real reward events and false-reward fraction of quiet stretches (module doc);
    None when the episodes hold no reward event with room for the replay."""
    events, quiet = find_cases(store, episodes, context, lead, tolerance)
    if not events:
        return None
    scored = slice(lead - tolerance, lead + tolerance + 1)  # dreamed frames within tolerance of r
    expected = dream_rewards(model, store, events + quiet, context, lead, tolerance, steps, seed)[:, scored]
    pays = np.where(np.abs(expected) >= threshold, np.sign(expected), 0)
    signs = np.array([c.sign for c in events])
    hit = (pays[:len(events)] == signs[:, None]).any(1)
    false = (pays[len(events):] != 0).any(1)
    return {"events": len(events), "paid": int(hit.sum()), "paid fraction": float(hit.mean()),
            "quiet stretches": len(quiet), "false rewards": int(false.sum()),
            "false fraction": float(false.mean()) if len(quiet) else float("nan"),
            "lead": lead, "tolerance": tolerance, "context": context}
