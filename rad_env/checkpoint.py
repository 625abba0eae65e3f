"""World-model checkpoints: plain dicts of JSON-like values and tensors (``weights_only`` loads).

Layout (``version`` 1)::

    format        "rad-env-checkpoint"
    version       1
    model_config  RADConfig.to_dict()
    train_config  dict (the trainer's settings)
    data          {"source", "action_set", "num_actions", "frame_shape", ...}
    model         state dict used for inference (the EMA weights when given)
    model_online  raw (non-EMA) weights, only when EMA weights were given
    step          int
    optimizer     optimizer state dict (optional)
    extra         dict (optional)
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import UserError
from .model import RADConfig, WorldModel

FORMAT = "rad-env-checkpoint"
VERSION = 1
DATA_KEYS = ("source", "action_set", "num_actions", "frame_shape")
REQUIRED_KEYS = ("format", "version", "model_config", "train_config", "data", "model", "step")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, unreadable, of another format/version, or does not fit."""


def _plain(obj: Any, where: str) -> Any:
    """Recursively convert to types ``torch.load(weights_only=True)`` accepts."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (pathlib.PurePath,)):
        return str(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: dict key {k!r} is not a str/int")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{where}: value of type {type(obj).__name__} cannot be stored in a checkpoint")


def _state_dict(obj: Any, where: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(f"{where} must be a state dict or nn.Module, got {type(obj).__name__}")
    return {k: v.detach().cpu().clone() for k, v in obj.items()}


def save_checkpoint(path: str | os.PathLike, model: WorldModel, *, train_config: dict,
                    data: dict, step: int, optimizer_state: dict | None = None,
                    ema_state: Mapping[str, torch.Tensor] | nn.Module | None = None,
                    extra: dict | None = None) -> pathlib.Path:
    """Write a checkpoint atomically (temporary file + ``os.replace``). Returns the path.

    ``data`` must hold ``source``, ``action_set``, ``num_actions``, ``frame_shape``.
    With ``ema_state`` (EMA state dict or module) ``model`` stores the EMA weights and
    ``model_online`` the raw ones."""
    path = pathlib.Path(path)
    if not isinstance(model, WorldModel):
        raise TypeError(f"model must be a WorldModel, got {type(model).__name__}")
    missing = [k for k in DATA_KEYS if k not in data]
    if missing:
        raise ValueError(f"checkpoint data is missing {missing} (need {list(DATA_KEYS)})")
    if int(data["num_actions"]) != model.config.num_actions:
        raise ValueError(f"data num_actions {data['num_actions']} != model config num_actions "
                         f"{model.config.num_actions}")
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": model.config.to_dict(),
        "train_config": _plain(dict(train_config), "train_config"),
        "data": _plain(dict(data), "data"),
        "model": _state_dict(ema_state if ema_state is not None else model, "model"),
        "step": int(step),
    }
    if ema_state is not None:
        ckpt["model_online"] = _state_dict(model, "model_online")
    if optimizer_state is not None:
        ckpt["optimizer"] = _plain(optimizer_state, "optimizer")
    if extra is not None:
        ckpt["extra"] = _plain(dict(extra), "extra")

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def _load_failure(exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in words for a user. Never repeats torch's advice to
    retry with ``weights_only=False``: rad-env checkpoints hold only tensors and plain values, and a
    file that needs more can run arbitrary code when loaded."""
    text = str(exc)
    if "Weights only load failed" in text:
        found = _UNSAFE_GLOBAL.search(text)
        what = f" ({found.group(1)})" if found else ""
        return (f"it holds Python objects{what} besides tensors and plain values, so it is not a rad-env "
                "checkpoint (rad-env never unpickles arbitrary objects)")
    first = text.strip().splitlines()[0][:200] if text.strip() else ""
    detail = f" ({type(exc).__name__}: {first})" if first and "weights_only" not in first else ""
    return f"corrupt, truncated or another kind of file{detail}"


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a checkpoint (tensors on CPU). Raises :class:`CheckpointError`."""
    path = pathlib.Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip/EOF/unsafe-global errors all mean "not ours"
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {_load_failure(e)}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: checkpoint is a {type(ckpt).__name__}, expected a dict "
                              f"with format {FORMAT!r}")
    fmt = ckpt.get("format")
    if fmt != FORMAT:
        raise CheckpointError(f"{path}: wrong checkpoint format tag {fmt!r}, expected {FORMAT!r}")
    version = ckpt.get("version")
    if version != VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint version {version!r}; this rad-env "
                              f"reads version {VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint is missing entries {missing}")
    return ckpt


def load_world_model(path: str | os.PathLike, device: torch.device | str = "cpu",
                     weights: str = "model") -> tuple[WorldModel, dict[str, Any]]:
    """Build the model from a checkpoint's config and load its weights (``weights`` =
    "model" (EMA when saved) or "model_online"). Returns (model in eval mode, checkpoint)."""
    ckpt = load_checkpoint(path)
    try:
        cfg = RADConfig.from_dict(ckpt["model_config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: model_config does not match this rad-env's RADConfig: {e}") from e
    data = ckpt["data"]
    if isinstance(data, dict) and "num_actions" in data and int(data["num_actions"]) != cfg.num_actions:
        raise CheckpointError(f"{path}: config mismatch: data num_actions {data['num_actions']} != "
                              f"model_config num_actions {cfg.num_actions}")
    if weights not in ckpt:
        raise CheckpointError(f"{path}: checkpoint has no {weights!r} weights")
    state = ckpt[weights]
    model = WorldModel(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(expected) & set(state)
                    if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        def short(keys: list[str]) -> str:
            return str(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        raise CheckpointError(
            f"{path}: state dict does not match model_config: missing keys {short(missing)}, "
            f"unexpected keys {short(unexpected)}, shape mismatches {short(shapes)}")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), ckpt
