"""rad-env: Recurrent Autoregressive Diffusion world models as Gymnasium environments."""

import os as _os

# The one place MUJOCO_GL is set (before anything imports MuJoCo): Memory Maze renders with MuJoCo, and
# Mesa's software EGL works headless on a CPU. An explicit MUJOCO_GL in the environment wins.
_os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"

from .envs import register_envs as _register_envs  # noqa: E402

_register_envs()
