"""Where a learned model's k-step policy-gradient error comes from: its Jacobians or its states.

MB-MIX measures its model by the cosine between the model's and the simulator's k-step policy
gradients (`fidelity_k*`: J_k = sum_{t<k} gamma^t r_t of the deterministic policy). A model can
get that gradient wrong in two ways: its Jacobians (what the Sobolev term trains) differ from
the simulator's, or the states it predicts differ, so that the reward's gradient, the policy's
actions and every later Jacobian are evaluated at the wrong states. This tool trains an agent in
process (MB-MIX or its MSE ablation, the task's preset plus --set overrides), then measures, from
held-out states of its own policy, the cosine against the simulator's gradient of:

  model           states and derivatives through the model (what MB-MIX uses)
  model Jacobian  the simulator's states, the model's derivatives (s' = f(s,a) + m(s,a) - m(s,a), the
                  f term detached): only the Jacobian error remains
  model states    the model's states, the simulator's derivatives (s' = m(s,a) + f(s,a) - f(s,a), the
                  m term detached): only the state error remains

    python tools/study_gradient_error.py --task cloth-unfold --algo mbmix-mse --iterations 300 --seed 0
    python tools/study_gradient_error.py --task cloth-unfold --algo mbmix --set sobolev_adjoint_alpha=1 ...
    python tools/study_gradient_error.py --task cheetah --algo mbmix --iterations 100 --kmax 16 --offsets 0,50,100,200,300

Prints one JSON line per run (the cosines per k for each variant, means over the start sets) and
writes it to --out if given.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import mbmix_taichi as mt
from mbmix_taichi.learner import resolve
from mbmix_taichi.learner.algos import make_agent


def start_states(agent, seed: int, offsets=(0, 5, 10, 15, 20)):
    """States the trained policy visits: its rollout from a held-out reset (seed), after each offset."""
    env = agent.env
    env.reset(seed)
    out, t = [], 0
    with torch.no_grad():
        for off in offsets:
            while t < off:
                env.step(agent.policy(env.observe(env.get_state()), deterministic=True))
                t += 1
            out.append(env.get_state().clone())
    return out


def measure(agent, kmax: int, seed: int, offsets=(0, 5, 10, 15, 20)) -> dict:
    env = agent.env
    sim = env.transition
    model = agent.model_step
    variants = {
        "model": model,
        "model Jacobian": lambda s, a: sim(s, a).detach() + model(s, a) - model(s, a).detach(),
        "model states": lambda s, a: model(s, a).detach() + sim(s, a) - sim(s, a).detach(),
    }
    cos = {name: [[] for _ in range(kmax)] for name in variants}
    for states in start_states(agent, seed, offsets):
        ref = agent.k_step_policy_gradients(states, kmax, sim)
        for name, step in variants.items():
            got = agent.k_step_policy_gradients(states, kmax, step)
            for k, (g, r) in enumerate(zip(got, ref)):
                cos[name][k].append(float(torch.nn.functional.cosine_similarity(g, r, dim=0)))
    return {name: [sum(c) / len(c) for c in per_k] for name, per_k in cos.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="cloth-unfold")
    ap.add_argument("--algo", default="mbmix", choices=["mbmix", "mbmix-mse", "mbmix-model"])
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kmax", type=int, default=8)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (JSON value)")
    ap.add_argument("--eval-seed", type=int, default=4242, help="reset seed of the held-out start states")
    ap.add_argument("--offsets", default="0,5,10,15,20",
                    help="steps of the trained policy after the held-out reset at which the start states are taken")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    overrides = {"iterations": args.iterations, "seed": args.seed, "checkpoint_every": 0}
    for kv in args.set:
        k, v = kv.split("=", 1)
        try:
            overrides[k] = json.loads(v)
        except json.JSONDecodeError:
            overrides[k] = v
    cfg = resolve(args.task, args.algo, overrides=overrides)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(max(1, cfg.torch_threads))
    env = mt.make(args.task, num_envs=cfg.num_envs, seed=cfg.seed, **cfg.task_options)
    agent = make_agent(cfg, env)
    c0 = time.process_time()
    for _ in range(cfg.iterations):
        row = agent.iterate()
    train_cpu = time.process_time() - c0
    result = {"task": args.task, "algo": args.algo, "seed": args.seed, "iterations": cfg.iterations,
              "overrides": {k: v for k, v in overrides.items() if k not in ("iterations", "seed")},
              "train_return": row["return"], "train_score": row["score"], "train_cpu_s": round(train_cpu, 1),
              "offsets": args.offsets,
              "cosines": measure(agent, args.kmax, args.eval_seed, tuple(int(x) for x in args.offsets.split(",")))}
    line = json.dumps(result)
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
