"""DiffRL's own SHAC beside ours: its training log as a run directory, its policy evaluated as ours is.

    python tools/diffrl_shac.py log-to-run LOG OUT --task hopper --seed 0 --envs 256 --window 32 [--mm 16]
    python tools/diffrl_shac.py eval --diffrl PATH --task hopper --checkpoint LOGDIR/final_policy.pt [--sim ours] [--mm 16]
    python tools/diffrl_shac.py eval --diffrl PATH --task hopper --run runs/.../hopper-shac-s0 [--sim ours]

``log-to-run`` reads the lines ``iter N: ep loss X, ..., ep len L, fps total F, ...`` that DiffRL's
``algorithms/shac.py`` prints each epoch and writes ``OUT/metrics.csv`` (iteration, env_steps =
N x envs x window, wall_time summed from its fps, return = -X, episode_length = L) and
``OUT/config.json`` (task, algo ``diffrl-shac``, seed, the caching as ``task_options``), so that
``mbmix-taichi plot`` draws it with our runs. DiffRL's "ep loss" is the mean over the last 100
training episodes to end (stochastic policy); ours is the mean of the episodes that ended in the
iteration: both are training returns, averaged differently.

``eval`` runs a deterministic policy, DiffRL's (``--checkpoint``, loaded with
``torch.load(weights_only=True)`` and DiffRL's actor, critic and running-mean classes allowed:
loading runs no code from the file) or one of our runs' (``--run``), on DiffRL's own environment
(``--sim diffrl``: ``--episodes`` envs from a stochastic reset, torch seed ``--seed``, each env's
first episode only, early termination on; DiffRL's own ``evaluate_policy`` averages the first N
episodes to end, which counts early falls twice) or on ours (``--sim ours``: our ``evaluate``, as
``mbmix-taichi eval`` does). So either learner's policy can be scored on either simulator. It needs
a DiffRL checkout as ``tools/compare_dflex.py`` does.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
from pathlib import Path

import numpy as np

from compare_dflex import diffrl_env_class

LINE = re.compile(r"^iter (\d+): ep loss (\S+), ep discounted loss \S+, ep len (\S+), fps total (\S+),")


def parse_log(text: str) -> list[dict]:
    """One row per epoch line of a DiffRL SHAC log; a non-finite loss (no episode ended yet) gives
    an empty return."""
    rows = []
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if m:
            it, loss, length, fps = int(m.group(1)), float(m.group(2)), float(m.group(3)), float(m.group(4))
            rows.append({"iteration": it, "loss": loss, "length": length, "fps": fps})
    return rows


def log_to_run(log: str, out: str, task: str, seed: int, envs: int, window: int, mm: int) -> Path:
    rows = parse_log(Path(log).read_text(errors="replace"))
    if not rows:
        raise SystemExit(f"{log!r} has no 'iter N: ep loss ...' lines: is it a DiffRL SHAC log?")
    steps = envs * window
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    wall = 0.0
    with open(d / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["iteration", "env_steps", "wall_time", "return", "episode_length"])
        for r in rows:
            wall += steps / r["fps"] if r["fps"] > 0 else 0.0
            ret = -r["loss"] if math.isfinite(r["loss"]) else ""
            w.writerow([r["iteration"], r["iteration"] * steps, f"{wall:.3f}", ret, r["length"]])
    config = {"task": task, "algo": "diffrl-shac", "seed": seed, "task_options": {"mass_matrix_every": mm},
              "source": str(Path(log).resolve())}
    (d / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return d


def diffrl_policy(checkpoint: str):
    """The deterministic policy of a DiffRL SHAC checkpoint, obs -> action in [-1, 1] (DiffRL's
    actor and running mean; needs DiffRL on the path, see `diffrl_env_class`)."""
    import torch
    import torch.nn as nn
    import models.actor
    import models.critic
    import utils.running_mean_std
    allowed = [models.actor.ActorStochasticMLP, models.actor.ActorDeterministicMLP, models.critic.CriticMLP,
               utils.running_mean_std.RunningMeanStd, nn.Sequential, nn.Linear, nn.ELU, nn.ReLU, nn.Tanh,
               nn.LayerNorm, nn.Identity]
    with torch.serialization.safe_globals(allowed):
        ck = torch.load(checkpoint, weights_only=True, map_location="cpu")
    actor, obs_rms = ck[0], ck[3]

    def policy_fn(obs):
        with torch.no_grad():
            o = obs.float()
            return torch.tanh(actor(obs_rms.normalize(o) if obs_rms is not None else o, deterministic=True))

    return policy_fn


def on_diffrl(Env, policy_fn, mm: int, episodes: int, seed: int, episode_length: int) -> np.ndarray:
    """Returns of each env's first episode on DiffRL's own environment."""
    import torch
    torch.manual_seed(seed)
    np.random.seed(seed)
    env = Env(num_envs=episodes, device="cpu", render=False, seed=seed, episode_length=episode_length,
              stochastic_init=True, MM_caching_frequency=mm, no_grad=True)
    ret = torch.zeros(episodes, dtype=torch.float64)
    length = torch.zeros(episodes, dtype=torch.long)
    live = torch.ones(episodes, dtype=torch.bool)
    with torch.no_grad():
        obs = env.reset()
        while live.any():
            obs, rew, done, _ = env.step(policy_fn(obs))
            ret += torch.where(live, rew.double(), torch.zeros_like(ret))
            length += live.long()
            live &= ~done.bool()
    print("lengths", " ".join(str(int(n)) for n in length.tolist()))
    return ret.numpy()


def evaluate(diffrl: str, task: str, sim: str, checkpoint: str | None, run: str | None, mm: int,
             episodes: int, seed: int, episode_length: int) -> None:
    Env = diffrl_env_class(diffrl, task)
    if checkpoint:
        policy_fn, options = diffrl_policy(checkpoint), {"mass_matrix_every": mm}
    else:
        from mbmix_taichi.learner.trainer import load_policy
        run_task, options, policy_fn = load_policy(run)
        if run_task != task:
            raise SystemExit(f"{run!r} trained {run_task!r}, not {task!r}")
    if sim == "diffrl":
        ret = on_diffrl(Env, policy_fn, mm, episodes, seed, episode_length)
        print("returns", " ".join(f"{r:.1f}" for r in ret))
        print(f"on DiffRL's {task}: mean {ret.mean():.1f} std {ret.std(ddof=1):.1f} over {episodes} episodes")
    else:
        from mbmix_taichi.learner.trainer import evaluate as evaluate_ours
        out = evaluate_ours(task, options, policy_fn, episodes=episodes, seed=seed)
        print(f"on our {task} {options}: mean {out['return']:.1f} std {out['return_std']:.1f} over {episodes} episodes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("log-to-run")
    a.add_argument("log")
    a.add_argument("out")
    a.add_argument("--task", required=True)
    a.add_argument("--seed", type=int, required=True)
    a.add_argument("--envs", type=int, required=True, help="DiffRL's num_actors")
    a.add_argument("--window", type=int, required=True, help="DiffRL's steps_num")
    a.add_argument("--mm", type=int, default=16, help="DiffRL's MM_caching_frequency")
    e = sub.add_parser("eval")
    e.add_argument("--diffrl", required=True)
    e.add_argument("--task", required=True, choices=["hopper", "cheetah", "ant", "humanoid"])
    who = e.add_mutually_exclusive_group(required=True)
    who.add_argument("--checkpoint", help="a DiffRL SHAC checkpoint (LOGDIR/final_policy.pt)")
    who.add_argument("--run", help="one of our run directories")
    e.add_argument("--sim", choices=["diffrl", "ours"], default="diffrl", help="whose simulator runs the episodes")
    e.add_argument("--mm", type=int, default=16)
    e.add_argument("--episodes", type=int, default=8)
    e.add_argument("--seed", type=int, default=777)
    e.add_argument("--episode-length", type=int, default=1000)
    args = ap.parse_args()
    if args.cmd == "log-to-run":
        print(log_to_run(args.log, args.out, args.task, args.seed, args.envs, args.window, args.mm))
    else:
        evaluate(args.diffrl, args.task, args.sim, args.checkpoint, args.run, args.mm, args.episodes, args.seed,
                 args.episode_length)


if __name__ == "__main__":
    main()
