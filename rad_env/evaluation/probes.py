"""Does the dream follow the actions? Probes against the real Memory Maze.

Replaying a recorded episode's env seed and actions reproduces its frames exactly, so from any
recorded state the real env can be driven by other actions and compared with the dream:

* **action probe**: from one real state, ``steps`` of turn-left, of turn-right and of forward, in the
  real env and in the dream (the same noise for every action). Each dreamed continuation should be
  closest to its own real continuation, and the dream's left-vs-right difference should be as large
  as the real one.
* **loop closure**: ``n`` left then ``n`` right; the last frame should be the first one again.
* **standing still**: ``2 n`` noop steps; the real view barely moves (the agent's momentum dies within a
  step), so the dream should hold the scene rather than dissolve it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.actions import MEMORY_MAZE
from .clips import Clips
from .rollout import observe_frames, psnr

NOOP, FORWARD, TURN_LEFT, TURN_RIGHT = MEMORY_MAZE.ids("noop", "forward", "turn_left", "turn_right")
PROBE_ACTIONS = {"left": TURN_LEFT, "right": TURN_RIGHT, "forward": FORWARD}


class ReplayError(RuntimeError):
    """The real env did not reproduce a recorded frame (other memory-maze version, or no seed)."""


class MemoryMazeReplay:
    """Drive the real Memory Maze from a recorded state: reset with the episode's seed, replay a prefix.

    The state after the last prefix is saved (:meth:`MemoryMazeEnv.save_state`): a later :meth:`go_to` in the
    same episode whose prefix extends it restores it and steps only the rest, so states visited in episode
    order cost one replay of the episode, not one per state."""

    def __init__(self, size: int = 9) -> None:
        from ..envs.memory_maze import MemoryMazeEnv

        self.env = MemoryMazeEnv(size)
        self._at: tuple[int, np.ndarray, object] | None = None  # (env seed, prefix, saved state)
        self.steps_replayed = 0  # real steps spent reaching states (a cost figure)

    def go_to(self, env_seed: int, prefix: np.ndarray, expect: np.ndarray | None = None) -> np.ndarray:
        """Put the real env in the state after ``prefix``; returns its frame (``self.env`` steps on from it).

        ``expect``: the recorded frame after ``prefix``; a mismatch raises :class:`ReplayError`."""
        if env_seed < 0:
            raise ReplayError("the episode has no recorded env seed")
        prefix = np.asarray(prefix, dtype=np.int64)
        seed, done, saved = self._at if self._at is not None else (None, None, None)
        if (seed == env_seed and len(done) <= len(prefix) and np.array_equal(prefix[:len(done)], done)
                and self.env.holds(saved)):
            obs, rest = self.env.restore_state(saved), prefix[len(done):]
        else:
            (obs, _), rest = self.env.reset(seed=int(env_seed)), prefix
        for a in rest:
            obs, *_ = self.env.step(int(a))
        self.steps_replayed += len(rest)
        self._at = (int(env_seed), prefix.copy(), self.env.save_state())
        if expect is not None and not np.array_equal(obs, expect):
            raise ReplayError(f"replaying seed {env_seed} did not reproduce the recorded frame")
        return obs

    def run(self, env_seed: int, prefix: np.ndarray, actions: list[int], expect: np.ndarray | None = None
            ) -> np.ndarray:
        """Frames after ``prefix`` and after each of ``actions``: uint8 (len(actions) + 1, H, W, 3).

        ``expect``: the recorded frame after ``prefix``; a mismatch raises :class:`ReplayError`."""
        frames = [self.go_to(env_seed, prefix, expect)]
        for a in actions:
            obs, *_ = self.env.step(int(a))
            frames.append(obs)
        return np.stack(frames)

    def close(self) -> None:
        self.env.close()


@dataclass
class ProbeState:
    """A recorded state: clip ``clip``, frame ``t`` of the clip (the last real frame the dream sees)."""

    clip: int
    t: int


def probe_states(clips: Clips, context: int, per_clip: int, rng: np.random.Generator) -> list[ProbeState]:
    """``per_clip`` states per clip, at frames where ``context`` real frames precede them."""
    states = []
    for n in range(len(clips)):
        ts = rng.choice(np.arange(context - 1, clips.length), size=min(per_clip, clips.length - context + 1),
                        replace=False)
        states += [ProbeState(n, int(t)) for t in sorted(ts)]
    return states


def real_continuations(replay: MemoryMazeReplay, clips: Clips, states: list[ProbeState],
                       sequences: list[list[int]]) -> np.ndarray:
    """Real frames (S, K, len + 1, H, W, 3) of each action sequence from each state (first = the state)."""
    out = []
    for st in states:
        step = clips.starts[st.clip] + st.t  # frames before this one = actions taken so far
        prefix = clips.episode_actions[st.clip][:step]
        out.append([replay.run(clips.env_seeds[st.clip], prefix, seq, expect=clips.frames[st.clip, st.t])
                    for seq in sequences])
    return np.asarray(out)


@torch.no_grad()
def dream_continuations(model, clips: Clips, states: list[ProbeState], sequences: list[list[int]], context: int,
                        steps: int | None = None, seed: int = 0) -> np.ndarray:
    """Dreamed frames (S, K, len, H, W, 3) of each action sequence from each state; every sequence of a
    state uses the same noise (generator seeded ``seed + state index``)."""
    k, length = len(sequences), len(sequences[0])
    device = model.device
    frames = np.stack([clips.frames[st.clip, st.t - context + 1:st.t + 1] for st in states for _ in range(k)])
    prev = np.stack([clips.prev_actions[st.clip, st.t - context + 1:st.t + 1] for st in states for _ in range(k)])
    gens = [torch.Generator(device=device).manual_seed(seed + i) for i in range(len(states)) for _ in range(k)]
    state = observe_frames(model, torch.from_numpy(frames), torch.from_numpy(prev).long(), generators=gens)
    actions = torch.tensor([seq for _ in states for seq in sequences], device=device)
    out = []
    for j in range(length):
        step = model.imagine(actions[:, j], state, steps=steps, generators=gens)
        state = step.state
        out.append(step.frames.cpu().numpy())
    return np.stack(out, 1).reshape(len(states), k, length, *out[0].shape[1:])


def action_probe_scores(dream: np.ndarray, real: np.ndarray, names: list[str]) -> dict:
    """dream (S, K, n, ...) vs real (S, K, n + 1, ...) (real's first frame is the start state).

    Returns accuracy (each dream closest, by mean squared error over the n frames, to its own real
    continuation), the confusion counts, per-action PSNR to its own real continuation, and the
    left-vs-right mean absolute difference in the dream and in the real env (grey levels)."""
    real_next = real[:, :, 1:].astype(np.float32)
    d = dream.astype(np.float32)
    s, k = d.shape[:2]
    mse = np.stack([[((d[:, a] - real_next[:, b]) ** 2).mean(axis=(1, 2, 3, 4)) for b in range(k)]
                    for a in range(k)], -1)  # (K_dream, S, K_real)
    mse = mse.transpose(1, 0, 2)  # (S, K_dream, K_real)
    closest = mse.argmin(-1)
    correct = closest == np.arange(k)[None]
    confusion = {f"{names[a]}->{names[b]}": int((closest[:, a] == b).sum()) for a in range(k) for b in range(k)}
    result = {"cases": int(s * k), "accuracy": float(correct.mean()),
              "accuracy per action": {names[a]: float(correct[:, a].mean()) for a in range(k)},
              "confusion": confusion,
              "psnr to own real": {names[a]: float(psnr(dream[:, a], real[:, a, 1:]).mean()) for a in range(k)}}
    if "left" in names and "right" in names:
        li, ri = names.index("left"), names.index("right")
        result["dream left-vs-right"] = float(np.abs(d[:, li] - d[:, ri]).mean())
        result["real left-vs-right"] = float(np.abs(real_next[:, li] - real_next[:, ri]).mean())
        result["left-vs-right ratio"] = result["dream left-vs-right"] / max(result["real left-vs-right"], 1e-6)
    return result


def loop_closure_scores(dream: np.ndarray, real: np.ndarray, unrelated: float) -> dict:
    """dream (S, 2n, ...), real (S, 2n + 1, ...) (real[:, 0] the start): PSNR(last, first) of each (also
    the standing-still probe's scores)."""
    first = real[:, 0]
    return {"cases": int(len(dream)), "dream psnr(last, first)": float(psnr(dream[:, -1], first).mean()),
            "real psnr(last, first)": float(psnr(real[:, -1], first).mean()),
            "dream psnr(last, real last)": float(psnr(dream[:, -1], real[:, -1]).mean()),
            "unrelated mazes psnr(first, first)": unrelated}


def unrelated_first_frames_psnr(clips: Clips) -> float:
    """Mean PSNR between the first frames of different clips (different mazes): the chance level."""
    f = clips.frames[:, 0]
    pairs = [psnr(f[i], f[j]) for i in range(len(f)) for j in range(i + 1, len(f))]
    return float(np.mean(pairs)) if pairs else float("nan")
