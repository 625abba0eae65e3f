"""Tests of rad_env.checkpoint: round trip and clear errors."""

from __future__ import annotations

import copy

import pytest
import torch

from rad_env.checkpoint import (FORMAT, CheckpointError, load_checkpoint, load_world_model,
                                save_checkpoint)
from rad_env.data import Batch
from rad_env.model import RADConfig, WorldModel

DATA = {"source": "memory-maze-9x9", "action_set": "memory-maze", "num_actions": 6,
        "frame_shape": (16, 16, 3)}



def small_model(seed: int = 0, **kw) -> WorldModel:
    torch.manual_seed(seed)
    cfg = RADConfig(image_size=16, patch_size=4, dim=48, depth=2, heads=2, window=3, seq_len=8,
                    memory_slots=2, memory_dim=32, num_actions=6, noise_features=16, **kw)
    model = WorldModel(cfg).eval()
    with torch.no_grad():  # make the zero-initialised branches matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def outputs(model: WorldModel) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 3, 16, 16, generator=g)
    sigma = torch.rand(2, 5, generator=g) + 0.1
    actions = torch.randint(0, 7, (2, 5), generator=g)
    with torch.no_grad():
        context = model.dit.forward_context(x, sigma.log() / 4, actions)
        out = model.dit.forward_targets(x.flip(1), sigma.log() / 4, actions, context)
    return torch.cat([out.flatten(), model.predict_outcome(context.features)[0].flatten()])


def test_roundtrip_identical_outputs(tmp_path):
    model = small_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    loss = model.loss(Batch(frames=torch.randint(0, 256, (1, 4, 16, 16, 3), dtype=torch.uint8),
                            prev_actions=torch.tensor([[6, 1, 2, 3]]), rewards=torch.zeros(1, 4),
                            terminated=torch.zeros(1, 4), is_first=torch.tensor([[True, False, False, False]]))).loss
    loss.backward()
    opt.step()
    model.eval()
    path = tmp_path / "sub" / "ckpt.pt"
    save_checkpoint(path, model, train_config={"lr": 1e-3, "batch": (8, 16)}, data=DATA,
                    step=42, optimizer_state=opt.state_dict(), extra={"note": "x"})
    assert path.exists() and list(path.parent.iterdir()) == [path]  # no temp file left

    loaded, ckpt = load_world_model(path)
    assert ckpt["format"] == FORMAT and ckpt["version"] == 1 and ckpt["step"] == 42
    assert ckpt["data"]["frame_shape"] == [16, 16, 3]
    assert ckpt["train_config"] == {"lr": 1e-3, "batch": [8, 16]}
    assert loaded.config == model.config
    assert not loaded.training
    torch.testing.assert_close(outputs(loaded), outputs(model), atol=0, rtol=0)
    opt2 = torch.optim.AdamW(loaded.parameters(), lr=1e-3)
    opt2.load_state_dict(ckpt["optimizer"])


def test_ema_weights_are_the_inference_model(tmp_path):
    model = small_model(0)
    ema = small_model(1)
    path = tmp_path / "ema.pt"
    save_checkpoint(path, model, train_config={}, data=DATA, step=1, ema_state=ema)
    loaded, ckpt = load_world_model(path)
    torch.testing.assert_close(outputs(loaded), outputs(ema), atol=0, rtol=0)
    online, _ = load_world_model(path, weights="model_online")
    torch.testing.assert_close(outputs(online), outputs(model), atol=0, rtol=0)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_world_model(tmp_path / "nope.pt")


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint\x00\x01" * 10)
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_checkpoint(path)


def test_truncated_file(tmp_path):
    model = small_model()
    path = tmp_path / "c.pt"
    save_checkpoint(path, model, train_config={}, data=DATA, step=0)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_world_model(path)


def _resave(path, fn):
    ckpt = torch.load(path, weights_only=True)
    fn(ckpt)
    torch.save(ckpt, path)


def test_wrong_format_and_version(tmp_path):
    model = small_model()
    path = tmp_path / "c.pt"
    save_checkpoint(path, model, train_config={}, data=DATA, step=0)
    _resave(path, lambda c: c.update(version=99))
    with pytest.raises(CheckpointError, match="unsupported checkpoint version 99"):
        load_world_model(path)
    _resave(path, lambda c: c.update(version=1, format="something-else"))
    with pytest.raises(CheckpointError, match="wrong checkpoint format tag"):
        load_checkpoint(path)
    torch.save({"a": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="format tag None"):
        load_checkpoint(path)


def test_config_and_state_dict_mismatch(tmp_path):
    model = small_model()
    path = tmp_path / "c.pt"
    save_checkpoint(path, model, train_config={}, data=DATA, step=0)
    good = torch.load(path, weights_only=True)

    bad = copy.deepcopy(good)
    bad["model_config"]["dim"] = 64
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_world_model(path)

    bad = copy.deepcopy(good)
    bad["model_config"]["warp_drive"] = True
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match="model_config.*warp_drive"):
        load_world_model(path)

    bad = copy.deepcopy(good)
    del bad["model"]["head.1.weight"]
    bad["model"]["extra.weight"] = torch.zeros(1)
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match="missing keys.*head.1.weight.*unexpected keys.*extra"):
        load_world_model(path)

    bad = copy.deepcopy(good)
    bad["data"]["num_actions"] = 4
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match="num_actions"):
        load_world_model(path)

    bad = copy.deepcopy(good)
    del bad["step"]
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match="missing entries.*step"):
        load_checkpoint(path)


def test_save_validates_inputs(tmp_path):
    model = small_model()
    with pytest.raises(ValueError, match="missing"):
        save_checkpoint(tmp_path / "x.pt", model, train_config={}, data={"source": "x"}, step=0)
    with pytest.raises(ValueError, match="num_actions"):
        save_checkpoint(tmp_path / "x.pt", model, train_config={}, data={**DATA, "num_actions": 3},
                        step=0)
    with pytest.raises(TypeError, match="train_config.fn"):
        save_checkpoint(tmp_path / "x.pt", model, train_config={"fn": print}, data=DATA, step=0)
    assert not list(tmp_path.iterdir())
