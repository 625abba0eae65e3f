"""The collision gate (rad_env.model.collision): refused presses found from positions, relabelled for training,
and predicted from the frame in a dream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rad_env.checkpoint import load_world_model
from rad_env.cli import UserError
from rad_env.data import Batch, Episode, EpisodeStore, FileMeta, read_segment, write_episodes
from rad_env.model import RADConfig, WorldModel
from rad_env.model.collision import (POSITION_EXTRAS, dreamed_presses, performed_batch, recorded_presses,
                                     refused_presses)
import rad_env.train as train_module
from rad_env.train import cli as train_cli

MEMORY_MAZE_REFUSED = [0, 0, 2, 3, 2, 3]  # noop, forward, left, right, forward-left, forward-right
MICRO = ["dim=32", "depth=1", "heads=2", "memory_slots=2", "memory_dim=16", "window=2", "seq_len=6"]
WALL_AT = 4  # the corridor's last cell: a step forward from it is refused


def corridor(seed: int, steps: int = 40, size: int = 16) -> Episode:
    """A corridor of WALL_AT + 1 cells: forward (1, 4, 5) moves the agent one cell on unless it stands at the
    wall, where the frame is red; elsewhere a white bar shows how far the wall is. Turns and noops stay."""
    rng = np.random.default_rng(seed)
    actions = rng.choice([0, 1, 1, 1, 2, 4, 5], steps)
    x = np.zeros(steps + 1)
    for t, a in enumerate(actions):
        x[t + 1] = x[t] + (1 if a in (1, 4, 5) and x[t] < WALL_AT else 0)
    obs = np.zeros((steps + 1, size, size, 3), np.uint8)
    for t, cell in enumerate(x.astype(int)):
        if cell == WALL_AT:
            obs[t, :, :, 0] = 220
        else:
            obs[t, :, : 3 * (cell + 1)] = 255
    position = np.stack([x + 0.5, np.full_like(x, 0.5)], axis=1).astype(np.float32)
    return Episode(obs=obs, action_id=actions, action=actions, reward=np.zeros(steps, np.float32),
                   terminated=np.zeros(steps, bool), truncated=np.eye(1, steps, steps - 1, dtype=bool)[0],
                   extras={"agent_pos": position}, seed=seed)


@pytest.fixture(scope="module")
def corridors(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corridors")
    meta = FileMeta("synthetic", "memory-maze", 6, (16, 16, 3))
    unplaced = corridor(9)
    unplaced.extras = {}
    return {"walks": write_episodes(root / "walks.h5", [corridor(s) for s in range(6)], meta),
            "no position": write_episodes(root / "none.h5", [unplaced] * 3, meta)}


def gate_model(bias: float | None = None, motion_prior: bool = False,
               hold_refused_as: tuple[int, ...] = ()) -> WorldModel:
    """A micro model with a gate; ``bias``: its logits fixed there (large: refuses every press it can)."""
    model = WorldModel(RADConfig(image_size=16, patch_size=4, dim=32, depth=1, heads=2, memory_slots=2,
                                 memory_dim=16, window=2, seq_len=6, motion_prior=motion_prior, motion_grid=4,
                                 refused_actions=MEMORY_MAZE_REFUSED, hold_refused_as=list(hold_refused_as))).eval()
    if bias is not None:
        last = model.collision.net[-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.constant_(last.bias, bias)
    return model


def test_refused_presses_are_the_steps_that_did_not_move() -> None:
    refusable = torch.tensor([False, True, False, False, True, True, False])
    actions = torch.tensor([[6, 1, 1, 2, 4, 5, 1]])
    x = torch.tensor([0.0, 0.0, 0.25, 0.25, 0.25, 0.26, 0.5])
    position = torch.stack([x, torch.zeros_like(x)], dim=-1)[None]
    previous = torch.cat([position[:, :1], position[:, :-1]], dim=1)
    is_first = torch.tensor([[True, False, False, False, False, False, False]])
    refused = refused_presses(position, previous, actions, is_first, refusable)
    # frame 1: forward moved 0; frame 3: a turn (never refused); frame 4: forward-left moved 0; 5: moved 0.01
    assert refused.tolist() == [[False, True, False, False, True, True, False]]


def test_the_position_before_each_frame_is_read_as_a_previous_extra(corridors) -> None:
    store = EpisodeStore(corridors["walks"])
    ref = store.episodes[0]
    position = store.read(ref, "agent_pos")
    first = read_segment(store, ref, 0, 5, POSITION_EXTRAS)
    np.testing.assert_array_equal(first.extras["previous:agent_pos"], np.concatenate([position[:1], position[:4]]))
    later = read_segment(store, ref, 7, 12, POSITION_EXTRAS)
    np.testing.assert_array_equal(later.extras["previous:agent_pos"], position[6:11])
    np.testing.assert_array_equal(later.extras["agent_pos"], position[7:12])
    assert read_segment(store, ref, 0, 1, POSITION_EXTRAS).extras["previous:agent_pos"].shape == (1, 2)


def test_a_training_batch_is_relabelled_as_performed(corridors) -> None:
    store = EpisodeStore(corridors["walks"])
    segments = [read_segment(store, ref, 0, 41, POSITION_EXTRAS) for ref in store.episodes]
    batch = Batch.collate(segments)
    performed = performed_batch(batch, gate_model().collision).prev_actions
    x = batch.extras["agent_pos"][..., 0]
    stuck = torch.cat([torch.zeros_like(x[:, :1], dtype=torch.bool), x[:, 1:] == x[:, :-1]], dim=1)
    pressed = batch.prev_actions
    forward = (pressed == 1) | (pressed == 4) | (pressed == 5)
    assert (forward & stuck).sum() > 10 and (forward & ~stuck).sum() > 10
    expected = torch.where(forward & stuck, torch.tensor(MEMORY_MAZE_REFUSED + [6])[pressed], pressed)
    assert torch.equal(performed, expected)
    with pytest.raises(ValueError, match="previous:agent_pos"):
        performed_batch(Batch.collate([read_segment(store, store.episodes[0], 0, 5, ("agent_pos",))]),
                        gate_model().collision)


def test_the_gate_relabels_only_what_it_refuses() -> None:
    actions = torch.arange(7)  # the null action too
    frames = torch.zeros(7, 3, 16, 16)
    refuses_all = gate_model(bias=10.0).collision
    assert refuses_all.performed(actions, frames).tolist() == [0, 0, 2, 3, 2, 3, 6]
    assert gate_model(bias=-10.0).collision.performed(actions, frames).tolist() == list(range(7))


def test_a_refused_press_is_dreamed_as_what_the_camera_does() -> None:
    """With a gate that refuses every step, pressing forward dreams exactly the noop frame (same noise) and
    forward-left the left turn; pressed=False takes the actions as performed (how training rollouts dream)."""
    model = gate_model(bias=10.0, motion_prior=True)
    with torch.no_grad():
        model.dit.motion.flow[1] = 0.3  # a step shifts the view (the untrained network ignores the action)
    frame = np.random.default_rng(0).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    state = model.observe(frame, [6], model.init_state(1))

    def dream(action: int, pressed: bool = True) -> torch.Tensor:
        return model.imagine([action], state, generators=[torch.Generator().manual_seed(0)], pressed=pressed).frames

    assert torch.equal(dream(1), dream(0)) and torch.equal(dream(4), dream(2))
    assert not torch.equal(dream(1, pressed=False), dream(0))


def test_a_refused_step_forward_can_hold_the_view() -> None:
    """hold_refused_as=[0]: a press the gate refuses as a noop repeats the last frame exactly (and commits it);
    a press refused as a turn, a noop pressed as such and a model without the option still sample a frame."""
    frame = np.random.default_rng(1).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)

    def dream(model: WorldModel, action: int, pressed: bool = True):
        state = model.observe(frame, [6], model.init_state(1))
        return model.imagine([action], state, generators=[torch.Generator().manual_seed(0)], pressed=pressed)

    holding = gate_model(bias=10.0, hold_refused_as=(0,))
    held = dream(holding, 1)
    assert np.array_equal(held.frames.cpu().numpy(), frame)
    assert torch.equal(held.state.prev_frame, holding.observe(frame, [6], holding.init_state(1)).prev_frame)
    for action, pressed in ((4, True), (0, True), (1, False)):
        assert not np.array_equal(dream(holding, action, pressed).frames.cpu().numpy(), frame), (action, pressed)
    assert not np.array_equal(dream(gate_model(bias=10.0), 1).frames.cpu().numpy(), frame)
    assert not np.array_equal(dream(gate_model(bias=-10.0, hold_refused_as=(0,)), 1).frames.cpu().numpy(), frame)


@pytest.mark.parametrize("overrides", [{"hold_refused_as": [1]}, {"hold_refused_as": [0], "refused_actions": []},
                                       {"hold_refused_as": 0}])
def test_hold_refused_as_names_what_the_gate_refuses_to(overrides) -> None:
    config = {"image_size": 16, "patch_size": 4, "refused_actions": MEMORY_MAZE_REFUSED, **overrides}
    with pytest.raises(ValueError, match="hold_refused_as"):
        RADConfig(**config)


def test_gate_fits_which_frames_refuse_a_step(corridors) -> None:
    store = EpisodeStore(corridors["walks"])
    model = gate_model()
    frames, actions, refused = recorded_presses(store, range(6), model.collision)
    assert len(frames) == int(((np.concatenate([store.read(r, "action_id") for r in store.episodes])[:, None]
                                == [1, 4, 5]).any(1)).sum())
    assert 10 < int(refused.sum()) < len(refused) - 10
    rng = torch.Generator().manual_seed(0)

    def batches():
        while True:
            idx = torch.randint(len(frames), (64,), generator=rng)
            yield frames[idx].permute(0, 3, 1, 2).float() / 127.5 - 1, actions[idx], refused[idx]

    result = model.collision.fit(batches(), steps=150)
    assert bool(model.collision.fitted)
    assert result["refused_caught"] > 0.95 and result["free_passed"] > 0.95, result


def test_training_with_a_gate_fits_it_and_learns_the_performed_actions(corridors, tmp_path: Path, capsys,
                                                                      monkeypatch) -> None:
    relabelled = []

    def spy(batch, gate):
        relabelled.append(performed_batch(batch, gate))
        return relabelled[-1]

    monkeypatch.setattr(train_module, "performed_batch", spy)
    common = ["--data", str(corridors["walks"]), "--batch-size", "4", "--held-out", "0.34", "--no-tensorboard",
              "--warmup", "1", "--steps", "2", "--collision-fit-steps", "150", "--tbptt", "--rollout-prob", "1"]
    run = train_cli(common + ["--out", str(tmp_path / "gate"), "--model", *MICRO,
                              f"refused_actions={MEMORY_MAZE_REFUSED}"])
    assert "collision gate fit in" in capsys.readouterr().out
    assert len(relabelled) == 2  # every training batch, as performed
    model, _ = load_world_model(run["checkpoint"])
    assert model.collision is not None and bool(model.collision.fitted)
    wall, open_road = torch.full((1, 3, 16, 16), -1.0), torch.full((1, 3, 16, 16), -1.0)
    wall[:, 0] = 220 / 127.5 - 1
    open_road[:, :, :, :6] = 1.0
    assert model.collision.performed(torch.tensor([1]), wall).item() == 0
    assert model.collision.performed(torch.tensor([1]), open_road).item() == 1
    with pytest.raises(UserError, match="no agent_pos"):
        train_cli(["--data", str(corridors["no position"]), "--out", str(tmp_path / "bad"), "--steps", "1",
                   "--held-out", "0.34", "--no-tensorboard", "--model", *MICRO,
                   f"refused_actions={MEMORY_MAZE_REFUSED}"])


def test_dreamed_presses_pair_each_press_with_the_frame_the_dream_presses_it_from(corridors) -> None:
    store = EpisodeStore(corridors["walks"])
    model = gate_model(bias=-10.0)  # refuses nothing: the dream follows the pressed actions
    presses = dreamed_presses(model, store, range(6), windows=10, context=2, horizon=5, seed=3)
    assert set(presses.dream_step.tolist()) <= set(range(5)) and 0 in presses.dream_step.tolist()
    assert presses.frames.dtype == torch.uint8 and presses.frames.shape[1:] == (16, 16, 3)
    assert set(presses.actions.tolist()) <= {1, 4, 5}  # only what the gate can refuse
    # every press is labelled as the real maze answered it: refused exactly when pressed from the wall cell,
    # which the frames pressed from at step 0 (real) show in red
    real = presses.dream_step == 0
    red = presses.frames[real][:, 0, 0, 0] == 220
    assert torch.equal(red, presses.refused[real])
    assert presses.refused.any() and (~presses.refused).any()
    assert not torch.equal(presses.frames[~real].float().mean(), presses.frames[real].float().mean())
    rows = presses.caught(gate_model(bias=10.0).collision, [(0, 0), (1, 4)])
    assert [r["refused caught"] for r in rows] == [1.0, 1.0] and [r["free passed"] for r in rows] == [0.0, 0.0]
    assert sum(r["refused"] + r["free"] for r in rows) == len(presses.actions)


def test_gate_dreams_fine_tune_the_gate_before_training(corridors, tmp_path: Path, capsys) -> None:
    common = ["--data", str(corridors["walks"]), "--batch-size", "4", "--held-out", "0.34", "--no-tensorboard",
              "--warmup", "1", "--steps", "0", "--collision-fit-steps", "20", "--tbptt", "--model", *MICRO,
              f"refused_actions={MEMORY_MAZE_REFUSED}"]
    plain = train_cli(common + ["--out", str(tmp_path / "plain")])
    tuned = train_cli(common + ["--out", str(tmp_path / "tuned"), "--gate-dreams", "6", "--gate-dream-steps", "5"])
    out = capsys.readouterr().out
    assert "collision gate fine-tuned" in out and "presses 9-16 of a dream" in out
    before, after = load_world_model(plain["checkpoint"])[0], load_world_model(tuned["checkpoint"])[0]
    assert not torch.equal(before.collision.net[0].weight, after.collision.net[0].weight)
    rest = [k for k in before.state_dict() if not k.startswith("collision.")]
    assert all(torch.equal(before.state_dict()[k], after.state_dict()[k]) for k in rest)
    with pytest.raises(UserError, match="gate-dreams"):
        train_cli(["--data", str(corridors["walks"]), "--out", str(tmp_path / "bad"), "--steps", "0",
                   "--held-out", "0.34", "--no-tensorboard", "--gate-dreams", "2", "--model", *MICRO])
