"""PPO and SAC (Stable-Baselines3) as algorithms of `train`, `Run` and the sweep: tiny runs on
cartpole-swingup write a run directory that eval and plot read; presets, budget, seeding,
resume refusal and the missing-extra error."""
import csv
import json
import sys

import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("stable_baselines3")

from mbmix_taichi.cli import main  # noqa: E402
from mbmix_taichi.errors import OptionError  # noqa: E402
from mbmix_taichi.learner import RunError, resolve  # noqa: E402
from mbmix_taichi.learner.trainer import Run, evaluate, load_policy, untrained_policy  # noqa: E402

# cartpole with 24-step episodes, so that a few hundred steps finish episodes
OPTS = ["-o", "episode_length=24"]
TINY_PPO = {"n_steps": 32, "batch_size": 32, "n_epochs": 2, "policy_kwargs": {"net_arch": {"pi": [16], "vf": [16]}}}
TINY_SAC = {"learning_starts": 32, "batch_size": 32, "iteration_steps": 64, "policy_kwargs": {"net_arch": [16, 16]}}


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _train_tiny_ppo(root, name):
    """A 128-step PPO run on cartpole through the CLI (seed 3) in root/name."""
    cfg = root / "ppo.json"
    cfg.write_text(json.dumps({"sb3": TINY_PPO, "eval_episodes": 2}))
    out = root / name
    res = _invoke("train", "cartpole-swingup", "--algo", "ppo", "--env-steps", 128, "--num-envs", 2, "--seed", 3,
                  "--config", cfg, "--out", out, "--quiet", *OPTS)
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    return _train_tiny_ppo(tmp_path_factory.mktemp("ppo"), "run")


def test_ppo_cli_run_directory(ppo_run):
    for f in ("config.json", "metrics.csv", "checkpoint.pt", "policy.pt", "log.txt"):
        assert (ppo_run / f).is_file(), f
    cfg = json.loads((ppo_run / "config.json").read_text())
    assert cfg["algo"] == "ppo" and cfg["num_envs"] == 2 and cfg["iterations"] == 2
    assert cfg["sb3"]["total_timesteps"] == 128 and cfg["sb3"]["n_steps"] == 32
    rows = _rows(ppo_run)
    assert [int(r["env_steps"]) for r in rows] == [64, 128]  # one rollout of 32 x 2 envs per iteration
    assert all(float(r["return"]) < 0 for r in rows)  # 24-step episodes finish in every iteration
    assert rows[-1]["critic_loss"] and rows[-1]["approx_kl"]
    # policy.pt: plain tensors (loaded with weights_only), the SB3 policy rebuilt from the config
    d = torch.load(ppo_run / "policy.pt", weights_only=True)
    assert set(d) >= {"sb3_policy", "obs_rms", "obs_dim", "act_dim"} and d["obs_rms"]["mean"].dtype == torch.float64
    task, opts, pol = load_policy(ppo_run)
    assert task == "cartpole-swingup" and opts["episode_length"] == 24  # all options, resolved (task.json)
    a = pol(torch.zeros(3, 5))
    assert a.shape == (3, 1) and a.abs().max() <= 1
    assert torch.equal(a, pol(torch.zeros(3, 5)))  # deterministic
    ev = evaluate(task, opts, pol, episodes=2)
    assert ev["return"] < 0
    _, _, pol0 = untrained_policy(ppo_run)
    assert pol0(torch.zeros(1, 5)).shape == (1, 1)


def test_ppo_eval_and_plot_read_the_run(ppo_run, tmp_path):
    res = _invoke("eval", ppo_run, "--episodes", 2, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["trained"]["return"] < 0 and out["untrained"]["return"] < 0
    png = tmp_path / "curves.png"
    res = _invoke("plot", ppo_run, "--out", png)
    assert res.exit_code == 0, res.output
    assert png.stat().st_size > 0
    from mbmix_taichi.viz.plot import load_run

    curves = load_run(ppo_run)
    assert curves.algo == "ppo" and list(curves.columns["env_steps"]) == [64, 128]


def test_ppo_seed_fixes_the_run(ppo_run, tmp_path):
    out = _train_tiny_ppo(tmp_path, "again")
    skip = {"wall_time", "steps_per_s"}
    strip = [{k: v for k, v in r.items() if k not in skip} for r in _rows(out)]
    assert strip == [{k: v for k, v in r.items() if k not in skip} for r in _rows(ppo_run)]
    a = torch.load(out / "policy.pt", weights_only=True)["sb3_policy"]
    b = torch.load(ppo_run / "policy.pt", weights_only=True)["sb3_policy"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ppo_resume_is_refused(ppo_run):
    with pytest.raises(RunError, match="cannot be resumed"):
        Run(None, ppo_run, resume=True, progress=False)


def test_sac_run_api(tmp_path):
    cfg = resolve("cartpole-swingup", "sac", overrides={
        "seed": 1, "num_envs": 2, "task_options": {"episode_length": 24},
        "sb3": {**TINY_SAC, "total_timesteps": 128}})
    assert cfg.iterations == 2 and cfg.sb3["buffer_size"] == 128
    rows = Run(cfg, tmp_path / "sac", progress=False).train()
    assert [r["env_steps"] for r in rows] == [64, 128]
    assert rows[-1]["return"] < 0 and rows[-1]["critic_loss"] == rows[-1]["critic_loss"]
    task, opts, pol = load_policy(tmp_path / "sac")
    assert evaluate(task, opts, pol, episodes=2)["return"] < 0


def test_presets_are_rl_zoo3s_and_the_budget_is_in_env_steps():
    c = resolve("hopper", "ppo")
    assert c.num_envs == 1 and c.sb3["learning_rate"] == 9.80828e-05 and c.sb3["n_steps"] == 512
    assert c.sb3["normalize"] is True and c.sb3["policy_kwargs"]["net_arch"] == {"pi": [256, 256], "vf": [256, 256]}
    assert c.sb3["total_timesteps"] == 1_000_000 and c.iterations == -(-1_000_000 // 512)
    c = resolve("cheetah", "ppo")
    assert c.sb3["gamma"] == 0.98 and c.sb3["n_epochs"] == 20
    c = resolve("ant", "sac")
    assert c.sb3["learning_starts"] == 10_000 and c.sb3["policy_kwargs"]["net_arch"] == [256, 256]
    with pytest.raises(OptionError, match="env-steps"):
        resolve("hopper", "ppo", overrides={"iterations": 10})
    with pytest.raises(OptionError, match="no key"):
        resolve("hopper", "ppo", overrides={"sb3": {"use_sde": True}})
    res = _invoke("train", "cartpole-swingup", "--algo", "shac", "--env-steps", 10)
    assert res.exit_code == 2 and "--env-steps" in res.output


def test_missing_extra_is_named(monkeypatch, tmp_path):
    from mbmix_taichi.learner.sb3 import need_sb3

    monkeypatch.setitem(sys.modules, "stable_baselines3", None)
    with pytest.raises(RunError, match=r"mbmix-taichi\[rl\]"):
        need_sb3("ppo")
    cfg = resolve("cartpole-swingup", "ppo", overrides={"sb3": {"total_timesteps": 64}})
    with pytest.raises(RunError, match=r"mbmix-taichi\[rl\]"):
        Run(cfg, tmp_path / "never", progress=False)
    assert not (tmp_path / "never").exists()  # named before the run directory is made


def test_sweep_runs_a_ppo_point(tmp_path):
    from mbmix_taichi.learner.sweep import grid, run_sweep

    points = grid(["cartpole-swingup"], ["ppo"], seeds=[0], overrides=[
        {"num_envs": 2, "task_options": {"episode_length": 24}, "sb3": {**TINY_PPO, "total_timesteps": 64}}])
    rows = run_sweep(points, tmp_path / "sweep", workers=1, eval_episodes=2, log=lambda m: None)
    assert len(rows) == 1 and rows[0]["algo"] == "ppo" and rows[0]["env_steps"] == 64 and rows[0]["return"] < 0
    assert (tmp_path / "sweep" / rows[0]["name"] / "policy.pt").is_file()
    assert "| cartpole-swingup | ppo |" in (tmp_path / "sweep" / "summary.md").read_text()
