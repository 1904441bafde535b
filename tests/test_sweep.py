"""The sweep runs a 2 x 2 grid of tiny runs in spawned worker processes and writes the summary."""
import csv
import shutil
from pathlib import Path

from mbmix_taichi.learner.sweep import grid, run_sweep

HERE = Path(__file__).parent


def test_two_by_two_grid_runs_locally_and_summarises(tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    shutil.copy(HERE / "_toy.py", tasks / "toy.py")  # workers load the toy task from a tasks dir
    tiny = {"iterations": 2, "num_envs": 2, "horizon": 4, "actor_hidden": [8], "critic_hidden": [8],
            "critic_iterations": 1, "checkpoint_every": 0}
    points = grid(["toy-reach"], ["mix", "shac"], seeds=[0], overrides=[{**tiny, "lam": 0.9}, {**tiny, "lam": 0.5}])
    assert len(points) == 4 and len({p.name for p in points}) == 4
    rows = run_sweep(points, tmp_path / "sweep", workers=2, tasks_dir=str(tasks), eval_episodes=2, log=lambda m: None)
    assert len(rows) == 4
    for r in rows:
        assert (tmp_path / "sweep" / r["name"] / "policy.pt").is_file()
        assert r["env_steps"] == 2 * 2 * 4 and r["return"] == r["return"]
    with open(tmp_path / "sweep" / "summary.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    md = (tmp_path / "sweep" / "summary.md").read_text()
    assert md.count("| toy-reach |") == 4
    # a finished point is not run again
    again = run_sweep(points[:1], tmp_path / "sweep", workers=1, tasks_dir=str(tasks), log=lambda m: None)
    assert again[0] == rows[0]
