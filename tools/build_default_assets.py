"""Build the embedded default: a tiny RAD checkpoint + real start frames shipped in rad_env/assets.

Exactly how the shipped files were made (see README "Embedded default"):

    python collect/record.py --env memory-maze-9x9 --episodes 40 --steps 500 --policy explore \\
        --workers 2 --seed 0 --out data/mm9
    python -m rad_env.train --data data/mm9 --preset tiny --steps 1500 --time-limit 3000 --threads 1 --out runs/default
    python -m rad_env.train --data data/mm9 --preset tiny --steps 3000 --time-limit 1380 --threads 2 --resume \
        --out runs/default
    python tools/build_default_assets.py --checkpoint runs/default/model.pt --data data/mm9 --sampling-steps 1

The checkpoint is stored with half-precision weights (loaded back as float32) to stay a few MB;
the start frames are the first ``window`` frames of the held-out episodes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rad_env.checkpoint import load_checkpoint, save_checkpoint
from rad_env.data import Episode, EpisodeStore, write_episodes
from rad_env.defaults import default_assets_dir
from rad_env.model import RADConfig, WorldModel
from rad_env.train import parse_overrides


def export_checkpoint(src: Path, dst: Path, overrides: dict[str, Any]) -> Path:
    """``src``'s EMA weights in float16 with model config ``overrides`` (inference settings such as
    sampling_steps, context_sigma, guidance), without the build machine's paths."""
    ckpt = load_checkpoint(src)
    model = WorldModel(RADConfig.from_dict({**ckpt["model_config"], **overrides}))
    model.load_state_dict(ckpt["model"])
    model.half()
    data = {**ckpt["data"], "path": ""}  # the data is not shipped: evaluation asks for --data
    train_config = {**ckpt["train_config"], "data": "", "out": ""}
    return save_checkpoint(dst, model, train_config=train_config, data=data, step=ckpt["step"],
                           extra={"exported_from": src.name, "weights_dtype": "float16",
                                  "inference_overrides": overrides})


def export_start_frames(data: Path, episodes: list[int], frames: int, dst: Path, max_segments: int) -> Path:
    store = EpisodeStore(data)
    assert store.meta is not None
    out = []
    for e in episodes[:max_segments]:
        ref = store.episodes[e]
        ep = store.read_episode(ref, ("obs", "action_id", "action", "reward", "terminated", "truncated"))
        steps = frames - 1
        out.append(Episode(obs=ep["obs"][:frames], action_id=ep["action_id"][:steps], action=ep["action"][:steps],
                           reward=ep["reward"][:steps], terminated=ep["terminated"][:steps],
                           truncated=np.zeros(steps, bool)))
    return write_episodes(dst, out, store.meta)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--out", type=Path, default=default_assets_dir())
    parser.add_argument("--segments", type=int, default=16)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="inference settings of the shipped model, e.g. sampling_steps=3 context_sigma=0.1")
    args = parser.parse_args(argv)
    ckpt = load_checkpoint(args.checkpoint)
    window = int(ckpt["model_config"]["window"])
    held = ckpt["data"].get("held_out_episodes") or list(range(len(EpisodeStore(args.data))))
    path = export_checkpoint(args.checkpoint, args.out / "memory_maze_tiny.pt", parse_overrides(args.set))
    starts = export_start_frames(args.data, held, window, args.out / "memory_maze_starts.h5", args.segments)
    for p in (path, starts):
        print(f"{p}: {p.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
