"""Does an agent reach a target a few steps away? The same states in the real maze and in the dream.

A full 1000-step Memory Maze episode needs two skills: finding the target, and reaching it once it is
in view. This probe isolates the second. From real states of held-out target-seeking walks, ``before``
steps before a real reward (replaying the episode's seed and actions puts the real env there exactly),
each policy acts for ``steps`` steps in the real maze, and in the dream started from the same real
frames; the probe counts the starts from which a reward arrives. Policies: ``ppo`` (a saved agent,
``--agent``), ``random`` and ``recorded`` (the walk's own next actions, which reach the target in
``before`` steps in the real maze by construction, so only the dream runs them: it is the reward replay
of ``rad_env.evaluate`` with the agent's horizon).

Reading it: an agent trained in the dream that beats ``random`` here in the real maze has learned from
the dream to reach a target it sees; if it still scores like ``random`` on full episodes, what it lacks
is finding one. An agent that only beats ``random`` in the dream learned the dream, not the maze.
``--at anywhere`` starts at seeded random frames instead (the states PPO trains from): the replayed dream walks
then say how many of the rewards the agent is paid in the dream the real maze pays too.

    python -m agents.approach_probe --agent runs/ppo/ppo_dream.zip --data data/target_test --out runs/approach
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from rad_env.cli import (UserError, add_dataclass_arguments, dataclass_from_args, option, removed_if_failed,
                         require_at_least, run_cli)
from rad_env.runtime import AMP_CHOICES

from .frame_stack import FrameFeeder

PROG = "python -m agents.approach_probe"
POLICIES = ("ppo", "random", "recorded")
ENVS = ("real", "dream")
STARTS = ("rewards", "anywhere")


@dataclass
class ProbeConfig:
    """Everything a probe run depends on (saved in ``approach.json``); one flag per field."""

    data: str = option(None, "held-out episodes with rewards and env seeds (`collect.record --policy target --seed S`)")
    agent: str | None = option(None, "a saved PPO agent (.zip); without it only random and recorded run")
    policies: str = option("ppo,random,recorded", "comma-separated policies: ppo, random, recorded")
    envs: str = option("real,dream", "comma-separated envs: real, dream")
    checkpoint: str | None = option(None, "RAD checkpoint of the dream (default: the shipped tiny model)")
    at: str = option("rewards", "where the starts are: `rewards` (--before steps before real rewards) or `anywhere` "
                     "(seeded random frames of the episodes: the states a dream-trained agent starts from, to "
                     "count how many of the dream's rewards under its own play are real)", choices=STARTS)
    before: int = option(8, "start this many steps before a real reward (--at rewards)")
    steps: int = option(16, "steps each policy acts from each start")
    per_episode: int = option(4, "use at most the first N reward events of each episode")
    max_starts: int = option(32, "use at most this many starts in all")
    seed: int = option(0, "seed of the policies' sampling and the dream's noise")
    amp: str = option("auto", "the dream's precision (auto, bf16, none)", choices=AMP_CHOICES)
    device: str = option("cpu", "device of the dream and the agent")
    threads: int = option(0, "torch CPU threads (0: half the cores, -1: torch's default)")
    replay_dream: bool = option(True, "replay each policy's dream actions in the real maze: are the dream's rewards real?")
    out: str | None = option(None, "folder for approach.json and approach_<policy>.png (default: print only)")

    def names(self, field: str, allowed: Sequence[str]) -> list[str]:
        values = [v.strip() for v in getattr(self, field).split(",") if v.strip()]
        unknown = sorted(set(values) - set(allowed))
        if unknown or not values:
            raise UserError(f"--{field}: unknown or no value(s) {unknown}; choose from {', '.join(allowed)}")
        return values

    def validate(self) -> None:
        """Raise :class:`UserError` naming the first unusable setting."""
        if not self.data:
            raise UserError("--data is required: held-out episodes with rewards (collect.record --policy target)")
        if not Path(self.data).exists():
            raise UserError(f"--data: no episodes at {self.data}")
        require_at_least(self, ("before", "steps", "per_episode", "max_starts"), 1)
        policies = self.names("policies", POLICIES)
        self.names("envs", ENVS)
        if "ppo" in policies and not self.agent:
            raise UserError("--policies ppo needs --agent AGENT.zip (or leave ppo out)")
        if self.agent and not Path(self.agent).is_file():
            raise UserError(f"--agent: no saved agent at {self.agent}")


@dataclass(frozen=True)
class Start:
    """Frame ``t`` of episode ``episode``, the last real frame before the policy acts (``--at rewards``:
    ``before`` steps before the reward that arrives with frame ``t + before``)."""

    episode: int
    t: int


def find_starts(store, before: int, context: int, per_episode: int, max_starts: int) -> list[Start]:
    """The first ``per_episode`` reward events of each episode with ``context`` frames before their start."""
    starts: list[Start] = []
    for e, ref in enumerate(store.episodes):
        reward = np.asarray(store.read(ref, "reward"), np.float64)  # reward[t] arrives with frame t + 1
        centres = [int(t) + 1 for t in np.nonzero(reward > 0)[0] if int(t) + 1 - before >= context - 1]
        starts += [Start(e, r - before) for r in centres[:per_episode]]
    return starts[:max_starts]


def random_starts(store, context: int, count: int, seed: int) -> list[Start]:
    """``count`` frames drawn uniformly (seeded, without repeats) from the frames of all episodes that have
    ``context - 1`` frames before them and an action after them; sorted by episode and frame."""
    pool = [Start(e, t) for e, ref in enumerate(store.episodes) for t in range(context - 1, ref.length)]
    if not pool:
        return []
    picks = np.random.default_rng(seed).choice(len(pool), size=min(count, len(pool)), replace=False)
    return sorted((pool[int(i)] for i in picks), key=lambda s: (s.episode, s.t))


Policy = Callable[[np.ndarray, int], np.ndarray]  # (observations (N, H, W, 3), step) -> actions (N,)


def make_policy(name: str, agent, num_actions: int, recorded: np.ndarray | None, seed: int) -> Policy:
    """A batched policy: ``ppo`` samples the agent's actions, ``random`` uniform ones, ``recorded``
    replays ``recorded[:, step]``."""
    if name == "ppo":
        import torch

        torch.manual_seed(seed)
        feeder = FrameFeeder(agent)

        def act(obs: np.ndarray, step: int) -> np.ndarray:
            seen = feeder.start(obs) if step == 0 else feeder.next(obs)
            return np.asarray(agent.predict(seen, deterministic=False)[0]).reshape(len(obs))
        return act
    if name == "random":
        rng = np.random.default_rng(seed)
        return lambda obs, step: rng.integers(0, num_actions, len(obs))
    assert recorded is not None
    return lambda obs, step: recorded[:, step]


def recorded_actions(store, starts: list[Start], steps: int) -> np.ndarray:
    """The walk's own next ``steps`` actions from each start (noop past the episode's end): (N, steps)."""
    recorded = np.zeros((len(starts), steps), np.int64)
    for i, s in enumerate(starts):
        tail = store.read(store.episodes[s.episode], "action_id")[s.t:s.t + steps]
        recorded[i, :len(tail)] = tail
    return recorded


@dataclass
class Walks:
    """What a policy did from each start: ``first[i]`` the step of its first reward (1..steps; 0: none),
    ``actions`` (N, steps) and ``frames`` (N, steps + 1, H, W, 3), the start's frame first; in the dream also
    ``features`` (N, steps, F) float16, what the model's heads read of each dreamed frame."""

    first: np.ndarray
    actions: np.ndarray
    frames: np.ndarray
    features: np.ndarray | None = None


def first_rewards(rewards: np.ndarray) -> np.ndarray:
    """(N, steps) rewards -> the step (1-based) of each row's first positive reward, 0 where none."""
    paid = rewards > 0
    return np.where(paid.any(1), paid.argmax(1) + 1, 0)


def run_real(policy_name: str, agent, store, starts: list[Start], steps: int, seed: int,
             actions: np.ndarray | None = None) -> Walks:
    """``steps`` steps of the policy from each start in the real maze. ``actions`` (N, steps): play these
    instead of the policy (``recorded``: the walk's own)."""
    from rad_env.evaluation.probes import MemoryMazeReplay

    replay = MemoryMazeReplay()
    fixed = recorded_actions(store, starts, steps) if actions is None else actions
    name = policy_name if actions is None else "recorded"  # given actions are played like a recorded walk
    taken = np.zeros((len(starts), steps), np.int64)
    rewards = np.zeros((len(starts), steps), np.float32)
    frames = []
    try:
        for i, s in enumerate(starts):
            ref = store.episodes[s.episode]
            env_seed = int(store.group(ref).attrs.get("seed", -1))
            obs = replay.go_to(env_seed, store.read(ref, "action_id")[:s.t],
                               expect=store.read(ref, "obs", s.t, s.t + 1)[0])
            policy = make_policy(name, agent, replay.env.action_space.n, fixed[i:i + 1], seed + i)
            walk = [obs]
            for k in range(steps):
                taken[i, k] = int(policy(obs[None], k)[0])
                obs, rewards[i, k], *_ = replay.env.step(int(taken[i, k]))
                walk.append(obs)
            frames.append(np.stack(walk))
    finally:
        replay.close()
    return Walks(first_rewards(rewards), taken, np.stack(frames))


def run_dream(policy_name: str, agent, core, store, starts: list[Start], steps: int, seed: int) -> Walks:
    """``steps`` steps of the policy from each start in the dream (``core`` holds one env per start)."""
    from rad_env.data import read_segment

    window = core.starts.context
    obs = np.zeros((len(starts), *core.frame_shape), np.uint8)
    for i, s in enumerate(starts):
        segment = read_segment(store, store.episodes[s.episode], s.t - window + 1, s.t + 1)
        obs[i] = core.start_env(i, segment.frames, segment.prev_actions, seed + i)
    policy = make_policy(policy_name, agent, core.num_actions, recorded_actions(store, starts, steps), seed)
    taken = np.zeros((len(starts), steps), np.int64)
    rewards = np.zeros((len(starts), steps), np.float32)
    frames, features = [obs], []
    for k in range(steps):
        taken[:, k] = policy(obs, k)
        obs, rewards[:, k], _ = core.step(taken[:, k])
        frames.append(obs)
        features.append(core.features.float().cpu().numpy().astype(np.float16))
    return Walks(first_rewards(rewards), taken, np.stack(frames, 1), np.stack(features, 1))


def summarise(first: np.ndarray) -> dict[str, Any]:
    reached = first > 0
    return {"starts": int(len(first)), "reached": int(reached.sum()), "fraction": float(reached.mean()),
            "mean steps to reward": float(first[reached].mean()) if reached.any() else None,
            "first reward step": first.tolist()}


def dream_rewards_in_the_real_maze(dream_first: np.ndarray, real_first: np.ndarray, tolerance: int = 2
                                   ) -> dict[str, Any]:
    """The dream's actions replayed in the real maze, given each walk's first reward step in both (0: none): of the
    starts the dream paid, how many the real maze pays within ``tolerance`` steps of the dream's reward (the
    dream's rewards that are real)."""
    paid, real = dream_first > 0, real_first > 0
    confirmed = paid & real & (np.abs(real_first - dream_first) <= tolerance)
    return {"dream paid": int(paid.sum()), "real pays too": int(confirmed.sum()),
            "real pays, dream not": int((real & ~paid).sum()),
            "precision": float(confirmed.sum() / paid.sum()) if paid.any() else None}


def approach_picture(path: Path, dream: Walks, real: Walks, rows: int = 6) -> Path:
    """Dream walks that paid (first) and the same actions in the real maze: row pairs, the start first."""
    from rad_env.evaluation.report import sequence_grid

    order = np.argsort(dream.first == 0, kind="stable")[:rows]
    pairs = [(f"#{i} dream paid at {dream.first[i] or '-'}, real at {real.first[i] or '-'}", real.frames[i],
              dream.frames[i, 1:]) for i in order]
    return sequence_grid(path, pairs, "the agent's dream walks (dream rows) and the same actions in the real maze")


def format_table(results: dict[str, dict[str, dict[str, Any]]], cfg: ProbeConfig) -> str:
    envs = cfg.names("envs", ENVS)
    where = (f"{cfg.before} steps before a real reward" if cfg.at == "rewards"
             else "at random frames of the episodes")
    lines = [f"starts {where}, {cfg.steps} steps each: reached / starts (mean steps to the reward)",
             f"{'policy':<10}" + "".join(f"{env:>24}" for env in envs)]
    for name, per_env in results.items():
        cells = []
        for env in envs:
            r = per_env.get(env)
            if r is None:
                cells.append("by construction" if name == "recorded" else "-")
                continue
            steps = f" ({r['mean steps to reward']:.1f})" if r["mean steps to reward"] is not None else ""
            cells.append(f"{r['reached']}/{r['starts']} = {r['fraction']:.2f}{steps}")
        lines.append(f"{name:<10}" + "".join(f"{c:>24}" for c in cells))
    for name, per_env in results.items():
        check = per_env.get("dream actions in the real maze")
        if check:
            lines.append(f"{name}'s dream walks replayed in the real maze: the dream paid {check['dream paid']}, the real "
                         f"maze pays {check['real pays too']} of those within 2 steps; it pays "
                         f"{check['real pays, dream not']} that the dream did not")
    return "\n".join(lines)


def run(cfg: ProbeConfig) -> dict[str, Any]:
    """Run the probe as ``cfg`` says; returns (and, with ``--out``, writes) the results."""
    from rad_env.data import EpisodeStore
    from rad_env.envs.context import StartFrames
    from rad_env.envs.core import load_dream_model
    from rad_env.envs.factory import make_dream_core
    from rad_env.envs.specs import MEMORY_MAZE_SPEC
    from rad_env.runtime import resolve_device, set_cpu_threads

    cfg.validate()
    set_cpu_threads(cfg.threads)
    policies, envs = cfg.names("policies", POLICIES), cfg.names("envs", ENVS)
    store = EpisodeStore(cfg.data)
    agent = None
    if "ppo" in policies:
        from stable_baselines3 import PPO

        agent = PPO.load(cfg.agent, device=cfg.device)
    core, window = None, 1
    if "dream" in envs:
        model, _ = load_dream_model(cfg.checkpoint, MEMORY_MAZE_SPEC, resolve_device(cfg.device))
        window = model.config.window
    starts = (random_starts(store, window, cfg.max_starts, cfg.seed) if cfg.at == "anywhere"
              else find_starts(store, cfg.before, window, cfg.per_episode, cfg.max_starts))
    if not starts and cfg.at == "anywhere":
        raise UserError(f"{cfg.data}: no episode has more than {window} frames", hint="record longer episodes")
    if not starts:
        raise UserError(f"{cfg.data}: no reward event with {window + cfg.before} frames before it",
                        hint="record target-seeking walks: python collect/record.py --policy target ...")
    if "dream" in envs:  # every env is started from its own real frames (DreamCore.start_env)
        blank = StartFrames(np.zeros((1, window, model.config.image_size, model.config.image_size, 3), np.uint8))
        core = make_dream_core(model, blank, len(starts), device=cfg.device, amp=cfg.amp)
    print(f"{len(starts)} starts from {len({s.episode for s in starts})} episodes of {cfg.data}", flush=True)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    timings: dict[str, float] = {}
    out = Path(cfg.out) if cfg.out else None
    with removed_if_failed(out) if out else contextlib.nullcontext():
        for name in policies:
            results[name] = {}
            for env in envs:
                if env == "real" and name == "recorded":
                    continue  # reaches the reward in exactly ``before`` steps: the replay is exact
                begin = time.perf_counter()
                walks = (run_real(name, agent, store, starts, cfg.steps, cfg.seed) if env == "real"
                         else run_dream(name, agent, core, store, starts, cfg.steps, cfg.seed))
                results[name][env] = summarise(walks.first)
                timings[f"{name} {env}"] = time.perf_counter() - begin
                print(f"{name} in the {env}: {results[name][env]['reached']}/{len(starts)} reached "
                      f"({timings[f'{name} {env}']:.0f} s)", flush=True)
                if env == "dream" and name != "recorded" and cfg.replay_dream:
                    begin = time.perf_counter()
                    real = run_real(name, agent, store, starts, cfg.steps, cfg.seed, actions=walks.actions)
                    results[name]["dream actions in the real maze"] = dream_rewards_in_the_real_maze(
                        walks.first, real.first)
                    timings[f"{name} dream actions in the real maze"] = time.perf_counter() - begin
                    if out:
                        out.mkdir(parents=True, exist_ok=True)
                        approach_picture(out / f"approach_{name}.png", walks, real)
        print(format_table(results, cfg))
        summary = {"config": asdict(cfg), "starts": [asdict(s) for s in starts], "results": results,
                   "seconds": timings}
        if out:
            out.mkdir(parents=True, exist_ok=True)
            (out / "approach.json").write_text(json.dumps(summary, indent=2))
            print(f"results: {out / 'approach.json'}")
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(parser, ProbeConfig)
    return parser


def cli(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return run(dataclass_from_args(ProbeConfig, build_parser().parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 on success, 2 with a one-line error for a user mistake."""
    return run_cli(cli, argv, prog=PROG)


if __name__ == "__main__":
    raise SystemExit(main())
