"""Reading NPZ inputs of the importers, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rad_env.data import SchemaError


def load_npz(path: Path, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    try:
        data = np.load(path, allow_pickle=allow_pickle)
    except Exception as exc:
        raise SchemaError(f"{path}: cannot be read as an NPZ file: {exc}") from exc
    out = {}
    with data:
        for key in data.files:
            try:
                out[key] = data[key]
            except ValueError as exc:
                raise SchemaError(f"{path}: key {key!r} holds Python objects ({exc}); re-run with --allow-pickle "
                                  "if you trust the file") from exc
    return out
