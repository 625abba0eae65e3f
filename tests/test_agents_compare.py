"""agents.compare: PPO in the dream vs PPO in the real maze for the same wall clock vs random, in the real maze."""

from __future__ import annotations

import json
import time

import pytest

from agents import compare


def eval_json(name: str, real: list[float], dream: list[float] | None, timesteps: int, seconds: float) -> dict:
    def result(env: str, returns: list[float]) -> dict:
        mean = sum(returns) / len(returns)
        std = (sum((r - mean) ** 2 for r in returns) / len(returns)) ** 0.5
        return {"env": env, "mean_return": mean, "std_return": std, "episodes": len(returns)}

    run = {"eval": [result("real", real)] + ([result("dream", dream)] if dream else [])}
    if name != "random":
        run["train"] = {"env": name.split("-")[1], "timesteps": timesteps, "seconds": seconds}
    return run


def test_summary_counts_the_world_models_data_as_real_steps(tmp_path) -> None:
    runs = {"ppo-dream": eval_json("ppo-dream", [1.0, 3.0], [4.0, 6.0], 20_000, 600.0),
            "ppo-real": eval_json("ppo-real", [0.0, 1.0], None, 8_000, 600.0),
            "random": eval_json("random", [0.0, 0.0], None, 0, 0.0)}
    rows = {r["agent"]: r for r in compare.summarise(runs, model_steps=50_000)}
    assert rows["ppo-dream"]["real steps used"] == 50_000 and rows["ppo-dream"]["train env steps"] == 20_000
    assert rows["ppo-dream"]["real return"] == 2.0 and rows["ppo-dream"]["real std"] == 1.0
    assert rows["ppo-dream"]["return per 1000 real steps used"] == pytest.approx(2.0 / 50)
    assert rows["ppo-dream"]["dream return"] == 5.0
    assert rows["ppo-real"]["real steps used"] == 8_000 and rows["ppo-real"]["dream return"] is None
    assert rows["random"]["real steps used"] == 0 and rows["random"]["return per 1000 real steps used"] is None
    table = compare.markdown_table(list(rows.values()))
    assert ("| ppo-dream | dream | 10.0 min | 20000 | 50000 | 2.00 +- 1.00 (n=2) | 5.00 +- 1.00 | 0.040 |"
            in table)
    assert "| random | - |" in table
    margin = compare.margin_over_random(list(rows.values()))
    assert margin["gap"] == 2.0 and margin["std sum"] == 1.0 and margin["episodes"] == 2
    assert not margin["beats random by both stds"]  # the gap is wide enough, but 2 episodes are too few
    assert "only 2 episodes" in compare.margin_line(margin)
    ten = [{**r, "real episodes": 10} for r in rows.values()]
    assert compare.margin_over_random(ten)["beats random by both stds"]
    wide = [{**r, "real std": 2.5 if r["agent"] == "ppo-dream" else r["real std"]} for r in ten]
    assert not compare.margin_over_random(wide)["beats random by both stds"]  # a gap of 2.0 against 2.5 + 0.0
    curves = {"ppo-dream": ("dream", [{"seconds": 60.0, "timesteps": 8000.0, "return": 1.0, "length": 1000.0}]),
              "ppo-real": ("real", [])}
    png = compare.plot_curves(tmp_path / "curves.png", curves, list(rows.values()))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_runs_three_agents_on_the_same_budget(dream_files, tmp_path) -> None:
    out = tmp_path / "cmp"
    start = time.perf_counter()
    summary = compare.cli(["--checkpoint", dream_files["checkpoint"], "--context", dream_files["context"],
                           "--minutes", "0.05", "--num-envs", "2", "--n-steps", "16", "--batch-size", "16", "--eval-episodes", "1",
                           "--eval-max-steps", "6", "--dream-horizon", "5", "--no-compile", "--out", str(out)])
    rows = {r["agent"]: r for r in summary["rows"]}
    assert set(rows) == {"ppo-dream", "ppo-real", "random"}
    for name in ("ppo-dream", "ppo-real"):  # stopped by the 3 s budget (checked between rollouts, so later on a
        # busy machine), not by the 1e9 timesteps
        assert 2.5 < rows[name]["train seconds"] < 90 and 0 < rows[name]["train env steps"] < 10_000
        assert (out / name / f"ppo_{name.split('-')[1]}.zip").exists()
    assert rows["ppo-dream"]["trained in"] == "dream" and rows["ppo-real"]["trained in"] == "real"
    assert rows["ppo-dream"]["real steps used"] is None  # the test checkpoint records no data size
    assert rows["ppo-real"]["real steps used"] == rows["ppo-real"]["train env steps"]
    assert all(r["real episodes"] == 1 for r in rows.values()) and rows["ppo-dream"]["dream return"] is not None
    assert (out / "curves.png").exists() and (out / "results.md").read_text().count("\n| ") == 3  # a row per agent
    assert "beats random by more than both: no (only 1 episode each" in (out / "results.md").read_text()
    assert summary["margin"]["episodes"] == 1
    assert json.loads((out / "results.json").read_text())["config"]["minutes"] == 0.05
    dream_run = json.loads((out / "ppo-dream" / "eval.json").read_text())["config"]
    assert dream_run["train_max_steps"] == 5 and dream_run["compile"] is False  # the dream agent's own flags
    assert time.perf_counter() - start < 180


def test_compare_user_errors(tmp_path, capsys) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    for argv, needle in [(["--minutes", "0"], "--minutes must be > 0"),
                         (["--checkpoint", str(tmp_path / "nope.pt")], "no file at"),
                         (["--out", str(tmp_path / "full")], "is not empty"),
                         (["--jobs", "0"], "--jobs must be >= 1, got 0"),
                         (["--forward-bonus", "-1"], "--forward-bonus must be >= 0")]:
        assert compare.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1 and err.startswith(compare.PROG)


def test_only_the_dream_agent_gets_the_shaping_flags() -> None:
    cfg = compare.CompareConfig(wall_penalty=0.01, forward_bonus=0.02, dream_horizon=16)
    dream = compare.run_command(cfg, "ppo-dream")
    assert dream[dream.index("--wall-penalty") + 1] == "0.01" and dream[dream.index("--forward-bonus") + 1] == "0.02"
    assert dream[dream.index("--train-max-steps") + 1] == "16"
    for name in ("ppo-real", "random"):
        assert not {"--wall-penalty", "--forward-bonus"} & set(compare.run_command(cfg, name))


def test_both_ppo_agents_see_the_same_frames_and_random_gets_none() -> None:
    cfg = compare.CompareConfig(frame_stack=4, view_pool=8)
    for name in ("ppo-dream", "ppo-real"):
        cmd = compare.run_command(cfg, name)
        assert cmd[cmd.index("--frame-stack") + 1] == "4" and cmd[cmd.index("--view-pool") + 1] == "8"
    assert not {"--frame-stack", "--view-pool"} & set(compare.run_command(cfg, "random"))


def test_world_model_steps_counts_every_stages_data(tmp_path) -> None:
    """A checkpoint that records its stages' recordings is charged all of them; an older one its last stage's."""
    import torch

    from rad_env.checkpoint import load_checkpoint
    from rad_env.defaults import default_assets_dir

    shipped = default_assets_dir() / "memory_maze_tiny.pt"
    data = load_checkpoint(shipped)["data"]
    assert compare.world_model_steps(None) == data["real_steps"] == sum(data["steps_by_seed"].values())
    older = load_checkpoint(shipped)
    older["data"] = {k: v for k, v in older["data"].items() if k not in ("steps_by_seed", "real_steps")}
    torch.save(older, tmp_path / "older.pt")
    assert compare.world_model_steps(str(tmp_path / "older.pt")) == older["data"]["steps"]
