"""TensorBoard events in a run directory: x axis = env steps (as SB3's), one point per iteration."""
import csv

import pytest

import _toy  # noqa: F401  (registers toy-reach)
from mbmix_taichi.learner import Run, resolve

pytest.importorskip("tensorboard")


def test_tensorboard_x_axis_is_env_steps(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = resolve("toy-reach", "shac", overrides=dict(num_envs=4, actor_hidden=[16], critic_hidden=[16],
                                                      critic_iterations=2, horizon=8, iterations=3,
                                                      checkpoint_every=0))
    run = Run(cfg, tmp_path / "run", progress=False)
    run.train()
    run._tb.flush()
    with open(tmp_path / "run" / "metrics.csv") as f:
        steps = [int(float(r["env_steps"])) for r in csv.DictReader(f)]
    acc = EventAccumulator(str(tmp_path / "run"))
    acc.Reload()
    assert "actor_loss" in acc.Tags()["scalars"] and "iteration" in acc.Tags()["scalars"]
    assert [e.step for e in acc.Scalars("actor_loss")] == steps
    assert [e.value for e in acc.Scalars("iteration")] == [1.0, 2.0, 3.0]
