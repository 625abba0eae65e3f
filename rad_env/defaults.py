"""The embedded default (a tiny checkpoint and real start frames in ``rad_env/assets``), and what to tell a
user when it is missing. Import-light: agents, tools and the envs all use it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .envs.specs import ENV_SPECS

#: How to get a checkpoint when none is shipped (one line, printed as a CLI hint).
TRAIN_HINT = ("train one: record episodes with `python -m collect.record` (see README), then "
              "`python -m rad_env.train --data DATA --preset tiny --out runs/tiny`, and pass "
              "`--checkpoint runs/tiny/model.pt --context DATA`")


def default_assets_dir() -> Path:
    """The folder of the shipped checkpoint and start frames."""
    return Path(str(resources.files("rad_env") / "assets"))


def missing_default_message(env_id: str, checkpoint: bool = True, context: bool = True) -> str | None:
    """Why ``env_id`` cannot run on its shipped defaults (the checkpoint and/or the start frames,
    as asked), or None when they are installed."""
    spec = ENV_SPECS[env_id]
    if checkpoint:
        if spec.default_checkpoint is None:
            return f"{env_id} ships no default checkpoint: pass --checkpoint PATH and --context EPISODES"
        path = default_assets_dir() / spec.default_checkpoint
        if not path.exists():
            return f"the shipped default checkpoint {path} is missing from this installation"
    if context and (spec.default_context is None or not (default_assets_dir() / spec.default_context).exists()):
        return (f"no shipped start frames for {env_id} in {default_assets_dir()}: pass --context EPISODES "
                "(recorded episodes, a .h5 file or a directory of them)")
    return None
