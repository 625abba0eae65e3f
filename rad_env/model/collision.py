"""Collision gate: which presses the maze refuses, and what the camera does instead.

A step forward against a wall does not move the agent: the camera does what the action without its step
does (stands still, or only turns for forward-left / forward-right). Scripted walks almost never push into
walls, so a world model trained on the pressed actions learns "forward zooms the view", and its dream walks
through every wall (measured: ``rad_env.evaluate --walls``, docs/experiments.md "Walking into walls").

The world model is therefore trained on the actions as the camera performed them: the trainer relabels each
refused press (the agent moved less than :data:`REFUSED_MOVE` cells, from the episodes' ``agent_pos``) with
``RADConfig.refused_actions[action]``. In a dream no position is known, so :class:`CollisionGate`, a small
CNN on the last frame, gives each press's probability of being refused, and
:meth:`rad_env.model.world_model.WorldModel.imagine` relabels the presses it refuses. It is fit to the
recorded presses before training (:meth:`CollisionGate.fit`, a minute on a CPU), as the motion prior is.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data import read_segment
from .config import RADConfig

#: A press is refused when the agent moves less than this far (cells of ``agent_pos``) in its step: a free
#: step forward moves ~0.25 cells, a refused one ~0.005.
REFUSED_MOVE = 0.02

#: The per-frame extra a training batch needs: the agent's position before each frame
#: (:func:`rad_env.data.segment.read_segment`'s ``previous:`` extras), beside ``agent_pos``.
POSITION_EXTRAS = ("agent_pos", "previous:agent_pos")

#: Dreams of the gate's dreamed presses (:func:`dreamed_presses`): their length, and the dream steps over which
#: the gate is reported (first, last), inclusive (step 0: pressed from the last real frame).
GATE_DREAM_HORIZON = 16
GATE_DREAM_BUCKETS = ((0, 0), (1, 3), (4, 7), (8, 15))


def refused_presses(position: torch.Tensor, previous: torch.Tensor, prev_actions: torch.Tensor,
                    is_first: torch.Tensor, refusable: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: frame t was reached by a press of a refusable action (``refusable`` (num_actions + 1,)
    bool, by action id) that moved the agent less than :data:`REFUSED_MOVE`; ``position`` and ``previous``
    (B, L, 2) the agent's position at each frame and at the frame before. False at episode starts."""
    moved = (position.double() - previous.double()).norm(dim=-1)
    return refusable.to(prev_actions.device)[prev_actions.long()] & (moved < REFUSED_MOVE) & ~is_first.bool()


class CollisionGate(nn.Module):
    """P(a press is refused | the frame it is pressed from): four stride-2 convolutions and one logit per
    action. Only the actions that ``refused_actions`` changes can be refused."""

    def __init__(self, cfg: RADConfig):
        super().__init__()
        if not cfg.refused_actions:
            raise ValueError("CollisionGate needs RADConfig.refused_actions")
        self.threshold = cfg.collision_threshold
        # by action id, the null action included (never refused)
        self.register_buffer("refused_as", torch.tensor(cfg.refused_actions + [cfg.num_actions]), persistent=False)
        self.register_buffer("refusable", self.refused_as != torch.arange(cfg.num_actions + 1), persistent=False)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        width = (16, 32, 64, 64)
        layers, c = [], cfg.channels
        for w in width:
            layers += [nn.Conv2d(c, w, 4, 2, 1), nn.SiLU()]
            c = w
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(c * 16, cfg.num_actions))

    def refused_prob(self, frames: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Frames (B, C, H, W) in [-1, 1] pressed from, actions (B,) -> P(refused) (B,) (0 where the action
        cannot be refused)."""
        actions = actions.long()
        logits = self.net(frames.float())
        picked = logits.gather(1, actions.clamp_max(logits.shape[1] - 1)[:, None])[:, 0]
        return torch.sigmoid(picked) * self.refusable[actions].to(picked.dtype)

    def relabel(self, actions: torch.Tensor, refused: torch.Tensor) -> torch.Tensor:
        """The actions as performed: each refused press (``refused`` bool, same shape) replaced by what the
        camera does instead."""
        actions = actions.long()
        return torch.where(refused.bool(), self.refused_as[actions], actions)

    @torch.no_grad()
    def performed(self, actions: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Pressed actions (B,) from frames (B, C, H, W) -> the actions as performed: those whose refusal the
        gate finds likelier than ``collision_threshold`` relabelled."""
        return self.relabel(actions, self.refused_prob(frames, actions) > self.threshold)

    def loss(self, frames: torch.Tensor, actions: torch.Tensor, refused: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of the presses of refusable actions (frames (N, C, H, W) pressed from,
        actions (N,), refused (N,) bool); 0 if there are none."""
        keep = self.refusable[actions.long()]
        if not keep.any():
            return frames.new_zeros(())
        logits = self.net(frames[keep].float()).gather(1, actions[keep].long()[:, None])[:, 0]
        return F.binary_cross_entropy_with_logits(logits, refused[keep].float())

    def fit(self, presses: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], steps: int,
            lr: float = 1e-3) -> dict[str, float]:
        """Fit the gate to recorded presses: ``presses`` yields at least ``steps`` batches of (frames
        (N, C, H, W) in [-1, 1] pressed from, actions (N,), refused (N,) bool). Marks the gate fitted.
        Returns the mean loss and the share of refused and of free presses it gets right over the last
        tenth of the batches."""
        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        tail = max(1, steps // 10)
        totals = {"loss": 0.0, "refused": 0.0, "refused_caught": 0.0, "free": 0.0, "free_passed": 0.0}
        it = iter(presses)
        with torch.enable_grad():
            for step in range(steps):
                try:
                    frames, actions, refused = next(it)
                except StopIteration as exc:
                    raise ValueError(f"CollisionGate.fit needs {steps} batches of presses, got {step}") from exc
                loss = self.loss(frames, actions, refused)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step >= steps - tail:
                    with torch.no_grad():
                        said = self.refused_prob(frames, actions) > self.threshold
                    refused = refused.bool() & self.refusable[actions.long()]
                    free = ~refused & self.refusable[actions.long()]
                    totals["loss"] += float(loss.detach()) / tail
                    totals["refused"] += float(refused.sum())
                    totals["refused_caught"] += float((said & refused).sum())
                    totals["free"] += float(free.sum())
                    totals["free_passed"] += float((~said & free).sum())
        self.fitted.fill_(True)
        return {"loss": totals["loss"],
                "refused_caught": totals["refused_caught"] / max(totals["refused"], 1.0),
                "free_passed": totals["free_passed"] / max(totals["free"], 1.0)}


def episode_refusals(store, ref, refusable: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One recorded episode's actions (T,) and whether the maze refused each (T,) bool, from its ``agent_pos``
    (``refusable``: (num_actions + 1,) bool by action id, on the CPU)."""
    actions = torch.from_numpy(store.read(ref, "action_id").astype("int64"))
    position = torch.from_numpy(store.read(ref, "agent_pos").astype("float64"))
    return actions, refused_presses(position[1:], position[:-1], actions, torch.zeros(len(actions), dtype=torch.bool),
                                    refusable)


def recorded_presses(store, episodes: Sequence[int], gate: CollisionGate, limit: int = 100_000,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every press of an action the gate can refuse in ``episodes`` (at most ``limit``, drawn at random):
    the frame pressed from (uint8 (N, H, W, 3)), the action (N,) and whether the maze refused it (N,) bool,
    from the recorded ``agent_pos`` (``store``: a :class:`rad_env.data.EpisodeStore`). ``ValueError`` if
    there are none."""
    frames, actions, refused = [], [], []
    refusable = gate.refusable.cpu()
    for e in episodes:
        ref = store.episodes[e]
        a, was_refused = episode_refusals(store, ref, refusable)
        chosen = torch.nonzero(refusable[a]).flatten()
        if len(chosen):
            frames.append(torch.from_numpy(store.read(ref, "obs"))[chosen])
            actions.append(a[chosen])
            refused.append(was_refused[chosen])
    if not frames:
        raise ValueError("the collision gate has no presses to learn from: the episodes never press an action "
                         "that refused_actions changes")
    out = torch.cat(frames), torch.cat(actions), torch.cat(refused)
    if len(out[0]) > limit:
        keep = torch.randperm(len(out[0]), generator=torch.Generator().manual_seed(seed))[:limit]
        out = tuple(t[keep] for t in out)
    return out


def performed_batch(batch, gate: CollisionGate):
    """A training :class:`rad_env.data.Batch` with :data:`POSITION_EXTRAS` -> the same batch with each
    refused press relabelled as what the camera did (``prev_actions``; :func:`refused_presses`)."""
    missing = [k for k in POSITION_EXTRAS if k not in batch.extras]
    if missing:
        raise ValueError(f"a collision gate's training batch needs the extras {list(POSITION_EXTRAS)}, "
                         f"missing {missing}")
    refused = refused_presses(batch.extras["agent_pos"], batch.extras["previous:agent_pos"], batch.prev_actions,
                              batch.is_first, gate.refusable.to(batch.prev_actions.device))
    return dataclasses.replace(batch, prev_actions=gate.relabel(batch.prev_actions, refused.to(batch.prev_actions.device)))


@dataclasses.dataclass(frozen=True)
class Presses:
    """Presses of actions a gate can refuse: the frame each is pressed from (uint8 (N, H, W, 3)), the action
    (N,), whether the maze refused it (N,) bool, and its dream step (N,) (0: pressed from the last real
    frame, k: from the k-th dreamed frame)."""

    frames: torch.Tensor
    actions: torch.Tensor
    refused: torch.Tensor
    dream_step: torch.Tensor

    def caught(self, gate: CollisionGate, buckets: Sequence[tuple[int, int]], batch_size: int = 256
               ) -> list[dict[str, float]]:
        """Per dream-step bucket (first, last), inclusive: its name (the presses' 1-based numbers in the
        dream), how many refused and free presses there are, the share of refused ones ``gate`` refuses and of
        free ones it lets through."""
        from .world_model import frames_to_float  # world_model builds the gate

        said, device = [], gate.refusable.device
        for i in range(0, len(self.actions), batch_size):
            actions = self.actions[i:i + batch_size].to(device)
            said.append((gate.performed(actions, frames_to_float(self.frames[i:i + batch_size], device))
                         != actions).cpu())
        refusing = torch.cat(said) if said else torch.zeros(0, dtype=torch.bool)
        rows = []
        for first, last in buckets:
            inside = (self.dream_step >= first) & (self.dream_step <= last)
            refused, free = inside & self.refused, inside & ~self.refused
            name = f"{first + 1}" if first == last else f"{first + 1}-{last + 1}"
            rows.append({"presses": name, "refused": int(refused.sum()), "free": int(free.sum()),
                         "refused caught": float((refusing & refused).sum()) / max(int(refused.sum()), 1),
                         "free passed": float((~refusing & free).sum()) / max(int(free.sum()), 1)})
        return rows


@torch.no_grad()
def dreamed_presses(model, store, episodes: Sequence[int], windows: int, context: int, horizon: int,
                    seed: int = 0, batch_size: int = 32) -> Presses:
    """The presses a gate meets in a dream: ``windows`` windows of ``episodes`` (half of them drawn among
    those whose presses the maze refused at least once, half at random), each dreamed by ``model`` (a
    :class:`rad_env.model.world_model.WorldModel` with a gate, as the env dreams: presses judged by the gate)
    after ``context`` real frames for ``horizon`` recorded presses; each press is paired with the dreamed frame
    it is pressed from and labelled with the real maze's answer (recorded ``agent_pos``). A gate fit to these
    learns to see walls in dreamed frames, where a gate fit to real frames loses them as the picture fades."""
    gate = model.collision
    if gate is None:
        raise ValueError("dreamed_presses needs a model with a collision gate (refused_actions)")
    refusable = gate.refusable.cpu()
    candidates, at_walls, labels = [], [], {}
    for e in episodes:
        ref = store.episodes[e]
        if ref.num_frames < context + horizon:
            continue
        labels[e] = episode_refusals(store, ref, refusable)
        refused = labels[e][1]
        for s in range(ref.num_frames - context - horizon + 1):
            candidates.append((e, s))
            if bool(refused[s + context - 1:s + context - 1 + horizon].any()):
                at_walls.append((e, s))
    if not candidates:
        raise ValueError(f"no episode has the {context + horizon} frames a window needs")
    rng = torch.Generator().manual_seed(seed)
    pool = [at_walls, candidates] if at_walls else [candidates]
    picks = [pool[i % len(pool)][int(torch.randint(len(pool[i % len(pool)]), (1,), generator=rng))]
             for i in range(windows)]
    out: dict[str, list[torch.Tensor]] = {"frames": [], "actions": [], "refused": [], "dream_step": []}
    for first in range(0, len(picks), batch_size):
        chunk = picks[first:first + batch_size]
        segments = [read_segment(store, store.episodes[e], s, s + context) for e, s in chunk]
        gens = [torch.Generator().manual_seed(seed * 1_000_003 + first + i) for i in range(len(chunk))]
        state = model.init_state(len(chunk))
        for j in range(context):
            frame = torch.stack([torch.from_numpy(sg.frames[j]) for sg in segments])  # uint8 (B, H, W, 3)
            state = model.observe(frame, torch.tensor([int(sg.prev_actions[j]) for sg in segments]), state, gens)
        for k in range(horizon):
            t = [s + context - 1 + k for _, s in chunk]
            pressed = torch.stack([labels[e][0][ti] for (e, _), ti in zip(chunk, t)])
            keep = refusable[pressed]
            out["frames"].append(frame.cpu()[keep])
            out["actions"].append(pressed[keep])
            out["refused"].append(torch.stack([labels[e][1][ti] for (e, _), ti in zip(chunk, t)])[keep])
            out["dream_step"].append(torch.full((int(keep.sum()),), k))
            step = model.imagine(pressed, state, generators=gens)
            frame, state = step.frames, step.state
    return Presses(**{k: torch.cat(v) for k, v in out.items()})
