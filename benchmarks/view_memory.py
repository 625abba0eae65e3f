"""Could a memory of observed views, indexed by the pose the actions imply, bring back revisited places?

    python -m benchmarks.view_memory --checkpoint rad_env/assets/memory_maze_tiny.pt --train data/mix/explore --test data/mm9_test   # ~2 min
    python -m benchmarks.view_memory --quick ...                                                                                     # seconds

A model-free upper bound for issue 9's memory gain by explicit retrieval (as WorldMem, Xiao et al. 2025, retrieves
past frames by pose): every frame of a real prefix is stored with its pose, and each later frame is predicted by
the stored frame nearest in pose (within ``--radius`` cells and ``--heading`` degrees, outside the last
``--window`` frames), turned by the heading difference and zoomed by the distance along the heading with the
checkpoint's motion prior (its pan in pixels per turn, its flow of a step forward). Poses come from the true
``agent_pos`` / ``agent_dir`` (what a perfect odometry would give), or are dead-reckoned from the actions as the
model could: each (previous action, action) pair's median turn and step, fit on ``--train``; "refusals known"
also knows which steps a wall refused (what a perfect collision gate would tell). Scored on the frames after the
prefix that revisit a place of it (cell and heading within 45 degrees, as ``rad_env.evaluate``'s memory
retrieval counts them), beside copy-last-frame and the mean frame; "all revisits" counts the mean frame where
nothing was retrieved (the embedded default's dream scores about the mean frame on revisits, docs/memory.md).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks._common import format_table
from rad_env.checkpoint import CheckpointError, load_world_model
from rad_env.data import EpisodeStore
from rad_env.evaluation.places import prefix_revisit_masks
from rad_env.metrics import frame_psnr
from rad_env.model import float_to_frames, frames_to_float
from rad_env.model.dit import previous_actions
from rad_env.runtime import set_cpu_threads

FIELDS = ("obs", "action_id", "agent_pos", "agent_dir")


def load(path: str, episodes: int, steps: int) -> dict[str, np.ndarray]:
    """The first ``episodes`` episodes of ``path`` cut to ``steps`` frames (and ``steps - 1`` actions), stacked."""
    store = EpisodeStore(path)
    refs = store.episodes[:episodes]
    steps = min([steps] + [ref.length + 1 for ref in refs])
    try:
        out = {k: np.stack([store.read(ref, k, 0, steps - 1 if k == "action_id" else steps) for ref in refs])
               for k in FIELDS}
    except KeyError:
        out = {}
    if not np.isfinite(out.get("agent_pos", np.nan)).all():
        raise ValueError(f"{path}: the episodes record no agent_pos / agent_dir (Memory Maze recordings do)")
    return out


def headings(direction: np.ndarray) -> np.ndarray:
    return np.arctan2(direction[..., 1], direction[..., 0])


def wrap(angle: np.ndarray | float) -> np.ndarray:
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def pair_keys(actions: np.ndarray, num_ids: int) -> np.ndarray:
    """(N, T) actions -> (previous action, action) keys as the motion prior numbers them (the null action,
    ``num_ids - 1``, before the first)."""
    previous = previous_actions(torch.from_numpy(actions), None, None, num_ids - 1).numpy()
    return previous * num_ids + actions


def moved(pos: np.ndarray) -> np.ndarray:
    """(N, T - 1) bool: the step changed the position (a wall refuses a step forward: it stays)."""
    return np.linalg.norm(np.diff(pos, axis=1), axis=-1) > 0.05


def fit_odometry(data: dict[str, np.ndarray], num_ids: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pair key: the median turn (radians) and the median step along the heading of the steps that moved."""
    keys = pair_keys(data["action_id"], num_ids).ravel()
    theta = headings(data["agent_dir"])
    turn = wrap(np.diff(theta, axis=1)).ravel()
    step = (np.diff(data["agent_pos"], axis=1) * data["agent_dir"][:, :-1]).sum(-1).ravel()
    went = moved(data["agent_pos"]).ravel()
    turns, steps = np.zeros(num_ids ** 2), np.zeros(num_ids ** 2)
    for k in np.unique(keys):
        turns[k] = np.median(turn[keys == k])
        if (went & (keys == k)).any():
            steps[k] = np.median(step[went & (keys == k)])
    return turns, steps


def dead_reckon(data: dict[str, np.ndarray], turns: np.ndarray, steps: np.ndarray, num_ids: int,
                refusals_known: bool) -> np.ndarray:
    """Poses (N, T, 3) (x, y, heading) from each episode's start pose and its actions alone."""
    keys = pair_keys(data["action_id"], num_ids)
    went = moved(data["agent_pos"]) if refusals_known else np.ones(keys.shape, bool)
    n, t = keys.shape[0], keys.shape[1] + 1
    poses = np.zeros((n, t, 3))
    poses[:, 0, :2], poses[:, 0, 2] = data["agent_pos"][:, 0], headings(data["agent_dir"][:, 0])
    for i in range(1, t):
        x, y, h = poses[:, i - 1].T
        d = steps[keys[:, i - 1]] * went[:, i - 1]
        poses[:, i] = np.stack([x + d * np.cos(h), y + d * np.sin(h), h + turns[keys[:, i - 1]]], -1)
    return poses


class ViewRenderer:
    """A stored frame shown from a nearby pose: the motion prior's pan (pixels per radian of turn, from its turn
    flows) and its forward step's flow, scaled by the distance moved along the heading."""

    def __init__(self, model, turns: np.ndarray, steps: np.ndarray, num_ids: int, forward: int):
        motion = model.dit.motion
        pans = motion.pan_pixels().numpy()
        turning = np.abs(turns) > np.radians(5)
        self.px_per_radian = float(np.median(-pans[turning] / turns[turning]))
        key = forward * num_ids + forward
        self.step = float(steps[key])
        self.forward = F.interpolate(motion.flow[key:key + 1].detach().float(), size=motion.image_size,
                                     mode="bilinear", align_corners=True)[0]
        self.identity, self.size = motion.identity, motion.image_size

    def __call__(self, frame: torch.Tensor, turn: float, ahead: float) -> torch.Tensor:
        """float frame (C, H, W) seen after turning by ``turn`` radians and moving ``ahead`` cells forward."""
        flow = self.forward * float(np.clip(ahead / self.step, -2, 2))
        flow[0] -= turn * self.px_per_radian * 2 / (self.size - 1)
        grid = (self.identity + flow.permute(1, 2, 0))[None]
        return F.grid_sample(frame[None], grid, mode="bilinear", padding_mode="border", align_corners=True)[0]


def retrieve(poses: np.ndarray, t: int, candidates: np.ndarray, radius: float, heading: float) -> int | None:
    """The candidate frame nearest to frame ``t``'s pose (distance / radius + turn / heading), or None."""
    dist = np.linalg.norm(poses[candidates, :2] - poses[t, :2], axis=-1)
    turn = np.degrees(np.abs(wrap(poses[t, 2] - poses[candidates, 2])))
    ok = (dist < radius) & (turn < heading)
    if not ok.any():
        return None
    return int(candidates[np.argmin(np.where(ok, dist / radius + turn / heading, np.inf))])


def score(test: dict[str, np.ndarray], poses: np.ndarray, render: ViewRenderer, revisit: np.ndarray, prefix: int,
          window: int, radius: float, heading: float, mean_frame: np.ndarray) -> list:
    """[revisits, found, view / mean / copy-last PSNR on the found ones, all revisits: views or mean frame, mean
    frame alone]."""
    view, mean, copy, found = [], [], [], []
    mean_u8 = torch.from_numpy(mean_frame.round().astype(np.uint8))[None]
    candidates = np.arange(prefix - window)
    for n in range(len(poses)):
        frames = frames_to_float(test["obs"][n])
        for t in np.flatnonzero(revisit[n]) + prefix:
            real = torch.from_numpy(test["obs"][n, t])[None]
            mean.append(float(frame_psnr(mean_u8, real)[0]))
            copy.append(float(frame_psnr(torch.from_numpy(test["obs"][n, prefix - 1])[None], real)[0]))
            j = retrieve(poses[n], t, candidates, radius, heading)
            found.append(j is not None)
            if j is None:
                view.append(mean[-1])
                continue
            ahead = float((poses[n, t, :2] - poses[n, j, :2]) @ [np.cos(poses[n, j, 2]), np.sin(poses[n, j, 2])])
            shown = render(frames[j], float(wrap(poses[n, t, 2] - poses[n, j, 2])), ahead)
            view.append(float(frame_psnr(float_to_frames(shown[None]), real)[0]))
    view_a, mean_a, copy_a, hit = map(np.array, (view, mean, copy, found))
    on = (lambda a: float(a[hit].mean())) if hit.any() else (lambda a: float("nan"))
    return [len(hit), int(hit.sum()), on(view_a), on(mean_a), on(copy_a), float(view_a.mean()), float(mean_a.mean())]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a model with a motion prior (its pan and forward flow)")
    parser.add_argument("--train", required=True, help="episodes the odometry is fit to")
    parser.add_argument("--test", required=True, help="held-out episodes (agent_pos / agent_dir recorded)")
    parser.add_argument("--episodes", type=int, default=12, help="held-out episodes scored")
    parser.add_argument("--train-episodes", type=int, default=24, help="episodes the odometry is fit to")
    parser.add_argument("--prefix", type=int, default=256, help="real frames stored")
    parser.add_argument("--horizon", type=int, default=128, help="frames after the prefix scored")
    parser.add_argument("--window", type=int, default=10, help="the last prefix frames not retrieved (as the "
                                                               "evaluation's memory ablation observes them)")
    parser.add_argument("--radius", type=float, nargs="+", default=[0.5, 0.25, 0.15], help="cells")
    parser.add_argument("--heading", type=float, nargs="+", default=[30.0, 15.0, 10.0], help="degrees, one per radius")
    parser.add_argument("--forward-action", type=int, default=1, help="the action id of a step forward")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 (and 4 training) episodes, prefix 40, horizon 20, "
                                                            "window 4")
    args = parser.parse_args(argv)
    if args.quick:
        args.episodes, args.train_episodes, args.prefix, args.horizon, args.window = 2, 4, 40, 20, 4
    if len(args.radius) != len(args.heading):
        print("view_memory: give one --heading per --radius", file=sys.stderr)
        return 2
    set_cpu_threads(args.threads)
    try:
        model, _ = load_world_model(args.checkpoint)
        if model.dit.motion is None:
            raise ValueError(f"{args.checkpoint}: the model has no motion prior to turn and zoom stored views with")
        train = load(args.train, args.train_episodes, 500)
        test = load(args.test, args.episodes, args.prefix + args.horizon)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"view_memory: {exc}", file=sys.stderr)
        return 2
    num_ids = model.config.num_actions + 1
    turns, steps = fit_odometry(train, num_ids)
    render = ViewRenderer(model, turns, steps, num_ids, args.forward_action)
    extras = {k: test[k] for k in ("agent_pos", "agent_dir")}
    masks = prefix_revisit_masks(extras, args.prefix, args.window)
    if masks is None or test["obs"].shape[1] <= args.prefix:
        print(f"view_memory: {args.test} episodes must be longer than --prefix {args.prefix}", file=sys.stderr)
        return 2
    revisit = masks[0]
    mean_frame = train["obs"].reshape(-1, *train["obs"].shape[2:]).mean(0)
    true = np.concatenate([test["agent_pos"], headings(test["agent_dir"])[..., None]], -1)
    pose_sets = {"true poses": true,
                 "dead reckoning, refusals known": dead_reckon(test, turns, steps, num_ids, True),
                 "dead reckoning from the actions": dead_reckon(test, turns, steps, num_ids, False)}
    rows = []
    with torch.no_grad():
        for name, poses in pose_sets.items():
            end = poses[:, args.prefix:, :2] - true[:, args.prefix:, :2]
            drift = float(np.median(np.linalg.norm(end, axis=-1)))
            for radius, heading in zip(args.radius, args.heading):
                rows.append([name, f"{drift:.2f}", f"{radius:g} / {heading:g}"]
                            + score(test, poses, render, revisit, args.prefix, args.window, radius, heading, mean_frame))
    print(f"\n{args.test}: {len(revisit)} episodes, prefix {args.prefix}, the next {args.horizon} frames; "
          f"odometry fit on {args.train}; pan {render.px_per_radian:.1f} px per radian, step {render.step:.3f} cells\n")
    print(format_table(["poses", "median error after the prefix (cells)", "radius / heading", "revisits",
                        "retrieved", "view PSNR", "mean frame", "copy last", "all revisits: view or mean frame",
                        "mean frame"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
