"""Walking into a wall: the real maze stops the agent, so its view stays (nearly) the same while
``forward`` is pressed. Does the dream stop too?

A dream that walks on through walls teaches an agent trained in it that ``forward`` always gets
somewhere: every PPO agent trained in the dream walked forward 60-100% of the time and stood at the first
wall of the real maze. Recorded episodes with blocked forward presses (``collect/record.py --bump P``)
give the test: the model observes the real frames up to the wall, then dreams the recorded forward
presses, which the real maze refused (``agent_pos`` did not move). Scored per press beside copy-last and
beside the same model on forward presses that did move (a model that stops everywhere is no better).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data import read_segment
from ..model.collision import REFUSED_MOVE, Presses, recorded_presses
from .probes import FORWARD
from .rollout import dream_rollout, psnr


@dataclass(frozen=True)
class ForwardRun:
    """Frame ``t`` of episode ``episode``, then ``presses`` forward presses, all blocked or all moving."""

    episode: int
    t: int
    blocked: bool


def find_forward_runs(store, context: int, presses: int, max_runs: int, blocked: bool) -> list[ForwardRun]:
    """Up to ``max_runs`` runs of ``presses`` forward presses (all blocked or all moving, as ``blocked``
    says, from the recorded ``agent_pos``) with ``context`` real frames up to their start, spread evenly over
    the episodes' runs (no two overlap). ``KeyError`` if the episodes have no ``agent_pos``."""
    runs: list[ForwardRun] = []
    for e, ref in enumerate(store.episodes):
        actions = np.asarray(store.read(ref, "action_id"))  # action[t] leads from frame t to t + 1
        position = np.asarray(store.read(ref, "agent_pos"), np.float64)  # one per frame
        still = np.hypot(*np.diff(position, axis=0).T) < REFUSED_MOVE
        t = context - 1
        while t + presses <= len(actions):
            window = slice(t, t + presses)
            if np.all(actions[window] == FORWARD) and np.all(still[window] == blocked):
                runs.append(ForwardRun(e, t, blocked))
                t += presses
            else:
                t += 1
    if len(runs) > max_runs:
        runs = [runs[i] for i in np.linspace(0, len(runs) - 1, max_runs).round().astype(int)]
    return runs


@torch.no_grad()
def dream_runs(model, store, runs: list[ForwardRun], context: int, presses: int, steps: int | None = None,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dreamed, real, last context frame): frames (N, presses, H, W, 3), (N, presses, H, W, 3), (N, H, W, 3)."""
    segments = [read_segment(store, store.episodes[r.episode], r.t - context + 1, r.t + presses + 1) for r in runs]
    frames = np.stack([s.frames for s in segments])
    prev_actions = np.stack([s.prev_actions for s in segments])
    dream = dream_rollout(model, frames, prev_actions, context, steps=steps, seed=seed).frames
    return dream, frames[:, context:], frames[:, context - 1]


def run_scores(dream: np.ndarray, real: np.ndarray, last: np.ndarray) -> dict[str, list[float]]:
    """Per press: PSNR of the dream to the real frame and of copy-last to it, and how much the dream and the
    real view change per press (mean absolute change from the previous frame, grey levels)."""
    def per_press(pred: np.ndarray) -> list[float]:
        return [float(psnr(pred[:, k], real[:, k]).mean()) for k in range(real.shape[1])]

    def change(frames: np.ndarray) -> list[float]:  # from the last real frame on
        steps = np.concatenate([last[:, None], frames], axis=1).astype(np.int16)
        return [float(v) for v in np.abs(np.diff(steps, axis=1)).mean(axis=(0, 2, 3, 4))]

    copy_last = np.repeat(last[:, None], real.shape[1], axis=1)
    return {"dream psnr": per_press(dream), "copy-last psnr": per_press(copy_last),
            "dream change": change(dream), "real change": change(real)}


def wall_table(blocked: dict[str, list[float]], moving: dict[str, list[float]] | None) -> list[dict[str, object]]:
    """One row per kind of run: mean over the presses of each score."""
    rows = []
    for name, scores in (("blocked (into a wall)", blocked), ("moving (control)", moving)):
        if scores is None:
            continue
        rows.append({"forward presses": name, **{k: round(float(np.mean(v)), 2) for k, v in scores.items()},
                     "dream change, last press": round(scores["dream change"][-1], 2)})
    return rows


def gate_scores(model, store) -> dict[str, float] | None:
    """How the model's collision gate (``RADConfig.refused_actions``) judges every press of the episodes it
    could refuse, against the recorded positions: the share of refused presses it refuses and of free ones
    it lets through (None without a gate)."""
    gate = model.collision
    if gate is None:
        return None
    frames, actions, refused = recorded_presses(store, range(len(store.episodes)), gate)
    row = Presses(frames, actions, refused, torch.zeros(len(actions), dtype=torch.long)).caught(gate, [(0, 0)])[0]
    return {"refused presses": row["refused"], "refused ones it refuses": row["refused caught"],
            "free presses": row["free"], "free ones it lets through": row["free passed"]}
