"""The learner end to end on the toy task: every algorithm learns, runs are reproducible,
resume equals an uninterrupted run, non-finite updates are skipped."""
import csv

import pytest
import torch

import _toy  # noqa: F401  (registers toy-reach)
from mbmix_taichi.learner import ALGOS, Run, evaluate, load_policy, resolve, untrained_policy
from mbmix_taichi.learner.config import RunError
from mbmix_taichi.learner.agent import Agent

FAST = dict(num_envs=8, actor_hidden=[32, 32], critic_hidden=[32, 32], critic_iterations=4,
            model_hidden=[48, 48], model_updates=15, model_batch=128, rollout_batch=64, policy_updates=2,
            model_horizon=8, collect_steps=8, horizon=16, checkpoint_every=0, ensemble_size=2)
ITERS = {"mbmix": 20, "mbmix-mse": 20, "mbmix-model": 20, "mix": 24, "shac": 24, "bptt": 16}


def _cfg(algo, **kw):
    fast = {k: v for k, v in FAST.items() if not (algo == "bptt" and k == "horizon")}  # bptt: whole episodes
    return resolve("toy-reach", algo, overrides={**fast, "iterations": ITERS[algo], **kw})


@pytest.mark.parametrize("algo", ALGOS)
def test_algorithm_improves_return(algo, tmp_path):
    run = Run(_cfg(algo), tmp_path / algo, progress=False)
    rows = run.train()
    assert len(rows) == ITERS[algo] and rows[-1]["skipped"] == 0
    trained = evaluate(*load_policy(tmp_path / algo), episodes=16)
    print(algo, trained, untrained := evaluate(*untrained_policy(tmp_path / algo), episodes=16))
    # the untrained policy acts near zero (its head starts small): return about -53, score 0.46
    # on these 16 episodes; a drift force pulls the point away from the origin
    assert trained["return"] > 0.7 * untrained["return"] + 5.0, (trained, untrained)
    assert trained["score"] > untrained["score"] + 0.05


def _metrics(path):
    with open(path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in r.items() if k not in ("wall_time", "steps_per_s")} for r in rows]


@pytest.mark.parametrize("algo", ["mbmix", "shac"])
def test_same_seed_same_metrics(algo, tmp_path):
    cfg = _cfg(algo, iterations=3)
    Run(cfg, tmp_path / "a", progress=False).train()
    Run(cfg, tmp_path / "b", progress=False).train()
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    other = _cfg(algo, iterations=3, seed=1)
    Run(other, tmp_path / "c", progress=False).train()
    assert _metrics(tmp_path / "a") != _metrics(tmp_path / "c")


@pytest.mark.parametrize("algo,extra", [("mbmix", {}), ("mix", {}),
                                        ("mbmix", {"full_jacobian_max_dim": 0}),  # random JVP probes
                                        ("mbmix", {"sobolev_adjoint_alpha": 1.0})])  # + adjoint pairs
def test_resume_equals_uninterrupted(algo, extra, tmp_path):
    cfg = _cfg(algo, iterations=4, **extra)
    Run(cfg, tmp_path / "full", progress=False).train()
    Run(cfg, tmp_path / "split", progress=False).train(stop_after=2)  # as if interrupted
    assert not (tmp_path / "split" / "policy.pt").exists()
    assert len(_metrics(tmp_path / "split")) == 2
    Run(None, tmp_path / "split", resume=True, progress=False).train()
    assert _metrics(tmp_path / "full") == _metrics(tmp_path / "split")
    a = torch.load(tmp_path / "full" / "policy.pt", weights_only=False)["actor"]
    b = torch.load(tmp_path / "split" / "policy.pt", weights_only=False)["actor"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_resume_and_eval_keep_the_task_options_the_run_started_with(tmp_path, monkeypatch):
    """A task's defaults change between two sessions (as hopper's early_termination did): resuming
    an existing run continues, and eval evaluates, the task as the run resolved it (task.json),
    while config.json keeps the options as given."""
    import json

    from _toy import ToyReach
    cfg = _cfg("mix", iterations=4)
    Run(cfg, tmp_path / "full", progress=False).train()
    Run(cfg, tmp_path / "split", progress=False).train(stop_after=2)
    saved = json.loads((tmp_path / "split" / "task.json").read_text())
    assert saved == {"task": "toy-reach", "options": {"dim": 2, "episode_length": 32}}
    monkeypatch.setattr(ToyReach, "default_options", {"dim": 2, "episode_length": 8})  # the new default
    Run(None, tmp_path / "split", resume=True, progress=False).train()
    assert _metrics(tmp_path / "split") == _metrics(tmp_path / "full")
    assert load_policy(tmp_path / "split")[1]["episode_length"] == 32
    assert json.loads((tmp_path / "split" / "config.json").read_text())["task_options"] == {}
    (tmp_path / "split" / "task.json").write_text(json.dumps({"task": "cloth-fold", "options": {}}))
    with pytest.raises(RunError, match="task.json"):
        load_policy(tmp_path / "split")


def test_non_finite_updates_are_skipped(tmp_path):
    run = Run(_cfg("shac", iterations=1), tmp_path / "r", progress=False)
    agent: Agent = run.agent
    before = [p.clone() for p in agent.actor.parameters()]
    p0 = next(agent.actor.parameters())
    agent.optimise(p0.sum() * float("nan"), agent.actor.parameters(), agent.actor_opt, "actor")
    agent.optimise((p0 * torch.tensor(float("inf"))).sum() * 0 + p0.sum() ** 0.5 * 0 + (p0 * float("inf")).mean(),
                    agent.actor.parameters(), agent.actor_opt, "actor")
    assert agent.skipped == 2
    for b, p in zip(before, agent.actor.parameters()):
        torch.testing.assert_close(b, p)
    assert "skipped" in (tmp_path / "r" / "log.txt").read_text()


def test_policy_fn_shapes(tmp_path):
    Run(_cfg("bptt", iterations=1), tmp_path / "r", progress=False).train()
    task, opts, pol = load_policy(tmp_path / "r")
    assert task == "toy-reach" and opts == {"dim": 2, "episode_length": 32}  # resolved (task.json)
    out = pol(torch.zeros(5, 4))
    assert out.shape == (5, 2) and not out.requires_grad
    torch.testing.assert_close(out, pol(torch.zeros(5, 4)))  # deterministic
    import json

    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    for key in ("task", "task_options", "algo", "seed", "num_envs"):
        assert key in cfg
    header = (tmp_path / "r" / "metrics.csv").read_text().splitlines()[0].split(",")
    for col in ("iteration", "env_steps", "wall_time", "return", "score", "actor_loss", "critic_loss"):
        assert col in header


def test_training_keeps_the_simulator_beside_the_learner_on_the_cpu(monkeypatch):
    """The learners' networks live on the CPU: the training env is made there (arch "cpu", also where
    torch sees a GPU), and an env that TI_ARCH put elsewhere is refused with a clear error instead of
    failing later on mixed devices."""
    import mbmix_taichi as mt
    from mbmix_taichi.errors import OptionError
    from mbmix_taichi.learner.config import Config
    from mbmix_taichi.learner.trainer import make_env

    cfg = Config(task="toy-reach", algo="mbmix", num_envs=2)
    env = make_env(cfg)
    assert env.device.type == "cpu" and env.arch in ("x64", "arm64")
    asked = {}

    class Elsewhere:
        device = torch.device("meta")

    def fake_make(task, **kw):
        asked.update(kw)
        return Elsewhere()

    monkeypatch.setattr(mt, "make", fake_make)
    monkeypatch.setenv("TI_ARCH", "cuda")
    with pytest.raises(OptionError, match="TI_ARCH='cuda'.*unset TI_ARCH"):
        make_env(cfg)
    assert asked["arch"] == "cpu"
