"""Run a grid of task x algo x seed x config overrides and write a summary table.

    python tools/sweep.py --tasks cartpole-swingup --algos shac,mix --seeds 0,1,2 \
        --grid horizon=8,16,32,64,128 --set iterations=100 --workers 2 --out runs/sweep-h
    python tools/sweep.py ... --backend ray      # on a Ray cluster (pip install "mbmix-taichi[ray]")

--grid KEY=V1,V2,... (repeatable) spans the product of its values; --set KEY=VALUE (repeatable)
applies to every point. Values are parsed as JSON where they can be (numbers, lists, booleans).
Writes OUT/<point>/ run directories, OUT/summary.csv and OUT/summary.md.
PPO and SAC (Stable-Baselines3) are budgeted in simulator steps, not iterations:
    python tools/sweep.py --tasks hopper --algos ppo,sac --set 'sb3={"total_timesteps": 200000}' ...
"""
from __future__ import annotations

import argparse
import itertools
import json

from mbmix_taichi.learner.sweep import grid, run_sweep


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", required=True)
    p.add_argument("--algos", required=True)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--backend", choices=["local", "ray"], default="local")
    p.add_argument("--tasks-dir", default=None)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    fixed = {}
    for item in a.set:
        k, _, v = item.partition("=")
        fixed[k] = _value(v)
    axes = []
    for item in a.grid:
        k, _, vs = item.partition("=")
        axes.append([(k, _value(v)) for v in vs.split(",")])
    overrides = [{**fixed, **dict(combo)} for combo in itertools.product(*axes)] if axes else [fixed]
    points = grid(a.tasks.split(","), a.algos.split(","), [int(s) for s in a.seeds.split(",")], overrides)
    run_sweep(points, a.out, workers=a.workers, backend=a.backend, tasks_dir=a.tasks_dir)
    print(open(f"{a.out}/summary.md").read())


if __name__ == "__main__":
    main()
