"""Shared test settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The test models are tiny, so per-op overhead dominates: one intra-op thread is faster, and it
    stays fast when the machine is busy (more threads than free cores make torch's pool spin)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def dream_files(tmp_path_factory) -> dict[str, str]:
    """A tiny random checkpoint (never predicts termination) and a few recorded start segments."""
    from rad_env.checkpoint import save_checkpoint
    from rad_env.data import Episode, FileMeta, write_episodes
    from rad_env.model import RADConfig, WorldModel

    root = tmp_path_factory.mktemp("agents")
    torch.manual_seed(0)
    cfg = RADConfig.preset("tiny", dim=32, depth=1, heads=2, mlp_ratio=2.0, memory_slots=2, memory_dim=16,
                           noise_features=16)
    model = WorldModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model.head[-1].bias[3] = -30.0
    data = dict(source="test", action_set="memory-maze", num_actions=6, frame_shape=(64, 64, 3))
    ckpt = save_checkpoint(root / "tiny.pt", model, train_config={}, data=data, step=0)
    rng = np.random.default_rng(0)
    episodes = []
    for s in range(2):
        actions = rng.integers(0, 6, 5)
        episodes.append(Episode(obs=rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8), action_id=actions,
                                action=actions.astype(np.int32), reward=np.zeros(5, np.float32),
                                terminated=np.zeros(5, bool), truncated=np.zeros(5, bool), seed=s))
    meta = FileMeta(source="test", action_set="memory-maze", num_actions=6, frame_shape=(64, 64, 3))
    context = write_episodes(root / "starts.h5", episodes, meta)
    return {"checkpoint": str(ckpt), "context": str(context), "root": str(root)}
