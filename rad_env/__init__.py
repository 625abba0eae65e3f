"""rad-env: Recurrent Autoregressive Diffusion world models as Gymnasium environments."""

import os as _os

# Memory Maze renders with MuJoCo; Mesa's software EGL works headless on CPU.
_os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"

from .envs import register_envs as _register_envs  # noqa: E402

_register_envs()
