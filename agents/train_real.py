"""Baseline: train PPO in the *real* Memory Maze (slow: ~30-40 env steps/s per CPU core) and evaluate
it exactly like a dream-trained agent (same options as ``agents.train_ppo``).

    python -m agents.train_real --num-envs 4 --timesteps 20000 --out runs/ppo_real
"""

from __future__ import annotations

from typing import Any, Sequence

from rad_env.cli import run_cli

from . import train_ppo

PROG = "python -m agents.train_real"


#: Defaults laid under the flags the user gives.
REAL_DEFAULTS = {"train_env": "real", "out": "runs/ppo_real"}


def cli(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """:func:`agents.train_ppo.cli` with the real Memory Maze as the training env; returns the summary."""
    return train_ppo.run(train_ppo.parse_config(argv, base=REAL_DEFAULTS))


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(cli, argv, prog=PROG)


if __name__ == "__main__":
    raise SystemExit(main())
