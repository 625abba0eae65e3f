"""RAD (Recurrent Autoregressive Diffusion) world model."""

from .config import MEMORY_TYPES, PRESETS, RADConfig
from .state import RADState
from .world_model import LossOutput, WorldModel, float_to_frames, frames_to_float

__all__ = ["LossOutput", "MEMORY_TYPES", "PRESETS", "RADConfig", "RADState", "WorldModel",
           "float_to_frames", "frames_to_float"]
