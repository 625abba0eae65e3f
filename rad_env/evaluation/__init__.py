"""Evaluation of a world model on held-out episodes, always beside baselines (see ``rad_env.evaluate``).

* :mod:`.clips`: held-out real clips and what is needed to replay them in the real env;
* :mod:`.rollout`: open-loop dreams from real context, copy-last and mean-frame baselines, tables;
* :mod:`.retrieval`: memory retrieval, dreams after a long real prefix vs after its last window only;
* :mod:`.denoiser`: one-shot denoising vs sampling from pure noise (the denoiser vs the sampler);
* :mod:`.probes`: action probe and loop closure against the real Memory Maze;
* :mod:`.report`: PNG grids and markdown.
"""

from .clips import Clips, load_clips
from .rollout import dream_rollout, observe_frames, psnr

__all__ = ["Clips", "load_clips", "dream_rollout", "observe_frames", "psnr"]
