#!/usr/bin/env python
"""The paper's tabular experiment (MB-MIX section 4.1, Fig. 3): MIX vs full-length APG.

MDP: 20 states, 5 actions, P(.|s, a) ~ Dirichlet(1), rewards r(s, a) ~ U(0, 1), initial states
uniform, gamma 0.99; softmax policy over tabular logits theta [S, A]; lambda 0.98.

Differentiable simulator. A tabular MDP has no path derivative through a sampled discrete state,
so the "state" of the differentiable simulator is the state *distribution* d_t (a row vector),
and the policy's action choice is carried exactly (the tabular analogue of a reparameterised
action):  d_{t+1} = sum_{s,a} d_t(s) pi(a|s) Phat_t(.|s, a),  r_t = sum_{s,a} d_t(s) pi(a|s) r(s, a).

* ``--noise K`` (default K = 1): Phat_t(.|s, a) is the empirical distribution of K next states drawn
  from P(.|s, a), fresh at every step and for every parallel rollout (exogenous simulator noise
  xi_t, independent of theta). With K = 1 every (s, a) has one sampled successor: a sampled
  trajectory, with the action expectation done analytically. E[d_t] = p0 P_pi^t by independence
  and linearity, so the full-length APG gradient is an unbiased (but noisy) estimate of the
  gradient of the T-step return.
* ``--noise 0``: the exact expected dynamics Phat_t = P; the only randomness is the sampled
  start state, so APG is the exact gradient of the T-step return from that start state.

Each iteration rolls out B = 8 parallel rollouts of T = 300 steps from one-hot start states
s_0 ~ p0 and takes one Adam step (the same lr for all methods) on:

* APG:  mean_b sum_{t<T} gamma^t r_t  (back-propagation through the whole trajectory, no critic)
* MIX:  mean_b R_0, the lambda-return of the same rollout (eq. 2/3; R_T = V(d_T)), with a tabular
  value V(d) = d . v fitted each iteration to the lambda-return targets of line 9 (ridge least
  squares, warm-started); the gradient does not flow into v.
* MIX (exact V): the same with v = V_pi computed exactly (an oracle ablation).

Evaluation: the exact infinite-horizon return J = p0 . V_pi (linear solve), against iterations,
over several training seeds on one MDP; the optimum J* (value iteration) and the uniform policy
are reference lines.

    python tools/study_tabular.py            # full run (writes docs/study_tabular.{png,md})
    python tools/study_tabular.py --quick    # smoke test
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)   # tiny tensors: one thread is several times faster than two here


def _sibling(name: str):
    spec = importlib.util.spec_from_file_location(f"_study_{name}", Path(__file__).with_name(f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


mix_objective = _sibling("study_grad_variance").mix_objective


# ---------------------------------------------------------------------------------------
# MDP and exact quantities
# ---------------------------------------------------------------------------------------
def make_mdp(seed: int = 0, n_states: int = 20, n_actions: int = 5, alpha: float = 1.0) -> dict:
    rng = np.random.default_rng(seed)
    P = torch.from_numpy(rng.dirichlet(np.full(n_states, alpha), size=(n_states, n_actions)))
    R = torch.from_numpy(rng.uniform(0.0, 1.0, size=(n_states, n_actions)))
    p0 = torch.full((n_states,), 1.0 / n_states)
    return {"P": P, "R": R, "p0": p0, "S": n_states, "A": n_actions}


def policy_probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, -1)


def exact_value(mdp: dict, pi: torch.Tensor, gamma: float) -> torch.Tensor:
    """V_pi = (I - gamma P_pi)^{-1} r_pi, differentiable in pi; pi [S, A] or [n, S, A]."""
    P_pi = torch.einsum("...sa,saz->...sz", pi, mdp["P"])
    r_pi = (pi * mdp["R"]).sum(-1)
    return torch.linalg.solve(torch.eye(mdp["S"]) - gamma * P_pi, r_pi.unsqueeze(-1)).squeeze(-1)


def exact_return(mdp: dict, logits: torch.Tensor, gamma: float) -> torch.Tensor:
    """p0 . V_pi for logits [S, A] (scalar) or [n, S, A] ([n])."""
    return exact_value(mdp, policy_probs(logits), gamma) @ mdp["p0"]


def optimal_return(mdp: dict, gamma: float, iters: int = 5000) -> float:
    V = torch.zeros(mdp["S"])
    for _ in range(iters):
        V = (mdp["R"] + gamma * mdp["P"] @ V).max(-1).values
    return float(mdp["p0"] @ V)


def mc_return(mdp: dict, logits: torch.Tensor, gamma: float, n: int, T: int, seed: int = 0) -> float:
    """Monte-Carlo estimate of J from n sampled trajectories of length T (discrete states and actions)."""
    g = torch.Generator().manual_seed(seed)
    pi = policy_probs(logits).detach()
    s = torch.multinomial(mdp["p0"], n, replacement=True, generator=g)
    G = torch.zeros(n)
    for t in range(T):
        a = torch.multinomial(pi[s], 1, generator=g).squeeze(1)
        G += gamma ** t * mdp["R"][s, a]
        s = torch.multinomial(mdp["P"][s, a], 1, generator=g).squeeze(1)
    return float(G.mean())


# ---------------------------------------------------------------------------------------
# Differentiable distributional rollouts (leading dims: n independent runs, B rollouts each)
# ---------------------------------------------------------------------------------------
def sample_successors(mdp: dict, T: int, n: int, B: int, K: int, gen: torch.Generator) -> torch.Tensor:
    """Successor indices [T, n, B, S*A*K]: K draws from P(.|s, a) per (t, run, rollout, s, a)."""
    S, A = mdp["S"], mdp["A"]
    cdf = torch.cumsum(mdp["P"].reshape(S * A, S), -1)
    cdf[:, -1] = 1.0                                                  # guard against round-off
    rows = torch.arange(S * A, dtype=cdf.dtype)
    flat = (cdf + 2.0 * rows[:, None]).reshape(-1)                    # all rows in one sorted array
    u = torch.rand(T, n, B, S * A, K, generator=gen)
    pos = torch.searchsorted(flat, u + 2.0 * rows[:, None])           # inverse CDF, row by row
    idx = (pos - S * torch.arange(S * A)[:, None]).clamp_(0, S - 1)
    return idx.reshape(T, n, B, S * A * K)


def rollout(mdp: dict, logits: torch.Tensor, d0: torch.Tensor, T: int, successors=None, K: int = 1):
    """logits [n, S, A], d0 [n, B, S]. Returns rewards [T, n, B] and distributions [T + 1, n, B, S].

    successors None: exact expected dynamics. Otherwise indices from :func:`sample_successors`:
    d_{t+1} = sum_{s,a} d_t(s) pi(a|s) (1/K) sum_k onehot(successor_k(s, a)).
    """
    pi = policy_probs(logits)
    n, B, S = d0.shape
    A = pi.shape[-1]
    d, ds, rs = d0, [d0], []
    for t in range(T):
        q = d[..., None] * pi[:, None]                                # [n, B, S, A]
        rs.append((q * mdp["R"]).sum((-1, -2)))
        if successors is None:
            d = q.reshape(n, B, S * A) @ mdp["P"].reshape(S * A, S)
        else:
            src = (q.reshape(n, B, -1, 1) / K).expand(-1, -1, -1, K).reshape(n, B, -1)
            d = torch.zeros(n, B, S, dtype=q.dtype).scatter_add(-1, successors[t], src)
        ds.append(d)
    return torch.stack(rs), torch.stack(ds)


def apg_objective(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """sum_{t<T} gamma^t r_t, averaged over the rollout dim; rewards [T, n, B] -> [n]."""
    disc = gamma ** torch.arange(rewards.shape[0], dtype=rewards.dtype)
    return torch.einsum("t,tnb->nb", disc, rewards).mean(-1)


def fit_tabular_value(v: torch.Tensor, ds: torch.Tensor, targets: torch.Tensor, ridge: float = 1e-3) -> torch.Tensor:
    """Per run: argmin_w ||D w - R||^2 + ridge m ||w - v||^2 with D the rows d_t, R the lambda-return targets.

    v [n, S], ds [T, n, B, S], targets [T, n, B]."""
    n, S = v.shape
    D = ds.permute(1, 0, 2, 3).reshape(n, -1, S)
    y = targets.permute(1, 0, 2).reshape(n, -1, 1)
    m = D.shape[1]
    A = D.transpose(1, 2) @ D + ridge * m * torch.eye(S)
    return torch.linalg.solve(A, D.transpose(1, 2) @ y + ridge * m * v[..., None]).squeeze(-1)


def _start(mdp, n, B, gen):
    s0 = torch.multinomial(mdp["p0"], n * B, replacement=True, generator=gen)
    return torch.nn.functional.one_hot(s0, mdp["S"]).double().reshape(n, B, mdp["S"])


def rollout_score(mdp: dict, logits: torch.Tensor, d0: torch.Tensor, T: int, gen: torch.Generator):
    """Sampled discrete trajectories with DiCE score terms (K = "score").

    Samples a_t ~ pi(.|s_t), s_{t+1} ~ P(.|s_t, a_t). Returns rewards [T, n, B] multiplied by the
    "magic box" b_t = exp(C_t - stop_grad(C_t)), C_t = sum_{k<=t} log pi(a_k|s_k) (value 1, gradient
    grad C_t), the one-hot states [T + 1, n, B, S], and the boxes [T, n, B]. Back-propagating any
    objective built from boxed rewards and boxed values V(s_{t+1}) b_t gives its score-function
    (likelihood-ratio) gradient: the stochastic-computation-graph "path derivative" of a discrete
    trajectory (transitions do not depend on theta).
    """
    pi = policy_probs(logits)
    n, B, S = d0.shape
    A = pi.shape[-1]
    cdf = torch.cumsum(mdp["P"].reshape(S * A, S), -1)
    cdf[:, -1] = 1.0
    rows = torch.arange(S * A, dtype=cdf.dtype)
    flat = (cdf + 2.0 * rows[:, None]).reshape(-1)
    s = d0.argmax(-1)                                                 # [n, B]
    states, rews, boxes = [d0], [], []
    C = torch.zeros(n, B)
    ar = torch.arange(n)[:, None]
    for t in range(T):
        p_sb = pi[ar, s]                                              # [n, B, A]
        u = torch.rand(n, B, 1, generator=gen)
        a = (torch.cumsum(p_sb.detach(), -1) < u).sum(-1).clamp(max=A - 1)
        C = C + torch.log(p_sb.gather(-1, a[..., None]).squeeze(-1))
        box = torch.exp(C - C.detach())
        rews.append(mdp["R"][s, a] * box)
        boxes.append(box)
        row = s * A + a
        u2 = torch.rand(n, B, generator=gen)
        s = (torch.searchsorted(flat, u2 + 2.0 * row) - S * row).clamp(0, S - 1)
        states.append(torch.nn.functional.one_hot(s, S).double())
    return torch.stack(rews), torch.stack(states), torch.stack(boxes)


def estimate(mdp: dict, logits: torch.Tensor, n: int, B: int, T: int, K, gen: torch.Generator):
    """One batch of rollouts: (rewards [T, n, B], distributions [T + 1, n, B, S], boxes or None)."""
    d0 = _start(mdp, n, B, gen)
    if K == "score":
        return rollout_score(mdp, logits, d0, T, gen)
    succ = sample_successors(mdp, T, n, B, K, gen) if K > 0 else None
    rew, ds = rollout(mdp, logits, d0, T, succ, K)
    return rew, ds, None


def objective(method: str, rew, ds, boxes, v, gamma: float, lam: float) -> torch.Tensor:
    """APG (plain discounted sum over the whole trajectory) or MIX (lambda-return with V(d) = d . v); [n]."""
    if method == "APG":
        return apg_objective(rew, gamma)
    vals = torch.einsum("tnbs,ns->tnb", ds, v)                       # v is a constant
    if boxes is not None:                                             # V(s_{t+1}) depends on a_0..a_t
        vals = torch.cat([vals[:1], vals[1:] * boxes])
    return mix_objective(rew, vals, gamma, lam)[0].mean(-1)


def train(mdp: dict, method: str, n_seeds: int, iters: int, T: int, B: int, K, gamma: float, lam: float,
          lr: float, seed: int = 0, eval_every: int = 10) -> dict:
    """n_seeds independent runs, vectorised (Adam is elementwise, so stacked logits = independent runs).

    method in {"APG", "MIX", "MIX-exactV"}; K an int >= 0 or "score".
    Returns {"iters": [...], "returns": array [n_seeds, n_evals]}."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.zeros(n_seeds, mdp["S"], mdp["A"], requires_grad=True)   # uniform initial policy
    opt = torch.optim.Adam([logits], lr=lr)
    v = torch.zeros(n_seeds, mdp["S"])
    its, rets = [], []
    for it in range(iters + 1):
        if it % eval_every == 0 or it == iters:
            with torch.no_grad():
                its.append(it)
                rets.append(exact_return(mdp, logits, gamma).numpy().copy())
        if it == iters:
            break
        rew, ds, boxes = estimate(mdp, logits, n_seeds, B, T, K, gen)
        if method == "MIX-exactV":
            with torch.no_grad():
                v = exact_value(mdp, policy_probs(logits), gamma)
        J = objective(method, rew, ds, boxes, v, gamma, lam)
        opt.zero_grad()
        (-J.sum()).backward()
        opt.step()
        if method == "MIX":                                           # critic on line-9 targets
            with torch.no_grad():
                dsd = ds.detach()
                Rs = mix_objective(rew.detach(), torch.einsum("tnbs,ns->tnb", dsd, v), gamma, lam)
                v = fit_tabular_value(v, dsd[:-1], Rs)
    return {"iters": its, "returns": np.stack(rets, 1)}


def grad_spread(mdp: dict, method: str, n: int, T: int, B: int, K, gamma: float, lam: float, seed: int = 0) -> dict:
    """Spread over n estimates of the gradient at the uniform initial policy (MIX with exact V)."""
    gv = _sibling("study_grad_variance")
    gen = torch.Generator().manual_seed(seed)
    logits = torch.zeros(n, mdp["S"], mdp["A"], requires_grad=True)   # n copies -> n independent estimates
    v = exact_value(mdp, policy_probs(logits), gamma).detach()
    rew, ds, boxes = estimate(mdp, logits, n, B, T, K, gen)
    J = objective(method, rew, ds, boxes, v, gamma, lam)
    G = torch.autograd.grad(J.sum(), logits)[0].reshape(n, -1)
    l0 = torch.zeros(mdp["S"], mdp["A"], requires_grad=True)
    true = torch.autograd.grad(exact_return(mdp, l0, gamma), l0)[0].reshape(-1)
    st = gv.grad_variance(G)
    mean = G.mean(0)
    st["cos_to_true"] = float(mean @ true / (mean.norm() * true.norm()))
    return st


def plot(results: dict, refs: dict, png: Path, title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = list(results)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.2), squeeze=False)
    colors = {"APG": "tab:red", "MIX": "tab:blue", "MIX-exactV": "tab:cyan"}
    for ax, panel in zip(axes[0], panels):
        for method, runs in results[panel].items():
            x = np.array(runs["iters"])
            Y = runs["returns"]
            m, s = Y.mean(0), Y.std(0)
            ax.plot(x, m, color=colors.get(method), label=f"{method} (n={Y.shape[0]})")
            ax.fill_between(x, m - s, m + s, color=colors.get(method), alpha=0.2)
        ax.axhline(refs["optimal"], color="k", ls="--", lw=1, label="optimal J*")
        ax.axhline(refs["uniform"], color="gray", ls=":", lw=1, label="uniform policy")
        ax.set_xlabel("iteration (one gradient step)")
        ax.set_ylabel("exact return p0·V_π")
        ax.set_title(panel, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--states", type=int, default=20)
    ap.add_argument("--actions", type=int, default=5)
    ap.add_argument("--mdp-seed", type=int, default=0)
    ap.add_argument("--gamma", type=float, default=0.99)
    ap.add_argument("--lam", type=float, default=0.98)
    ap.add_argument("--horizon", type=int, default=300, help="trajectory length T")
    ap.add_argument("--batch", type=int, default=8, help="parallel rollouts per iteration")
    ap.add_argument("--noise", default="1,0,score",
                    help="comma list of constructions: K samples per (s,a) per step (0 = exact dynamics), or 'score'")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--iters", type=int, default=None, help="default 400 (quick 40)")
    ap.add_argument("--seeds", type=int, default=None, help="training seeds (default 8, quick 2)")
    ap.add_argument("--methods", default="APG,MIX,MIX-exactV")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--md", default=str(DOCS / "study_tabular.md"))
    ap.add_argument("--png", default=str(DOCS / "study_tabular.png"))
    args = ap.parse_args(argv)
    iters = args.iters or (40 if args.quick else 400)
    n_seeds = args.seeds or (2 if args.quick else 8)
    T = args.horizon if not args.quick else min(args.horizon, 100)
    noises = [k if k == "score" else int(k) for k in args.noise.split(",")]
    methods = args.methods.split(",")
    t0 = time.time()
    mdp = make_mdp(args.mdp_seed, args.states, args.actions)
    refs = {"optimal": optimal_return(mdp, args.gamma),
            "uniform": float(exact_return(mdp, torch.zeros(args.states, args.actions), args.gamma))}
    print(f"MDP seed {args.mdp_seed}: S={args.states} A={args.actions} gamma={args.gamma}: "
          f"J(uniform)={refs['uniform']:.3f}  J*={refs['optimal']:.3f}")
    results, spreads = {}, {}
    for K in noises:
        panel = ("sampled trajectories, score-function terms (DiCE)" if K == "score" else
                 f"distributional, sampled successors (K={K})" if K > 0 else "distributional, exact dynamics (K=0)")
        results[panel] = {}
        for method in methods:
            runs = train(mdp, method, n_seeds, iters, T, args.batch, K, args.gamma, args.lam, args.lr)
            results[panel][method] = runs
            fin = runs["returns"][:, -1]
            print(f"  [{panel}] {method:11s} final J = {fin.mean():.3f} ± {fin.std():.3f}  "
                  f"({time.time() - t0:.0f} s)")
        spreads[panel] = {m: grad_spread(mdp, m, 32 if args.quick else 200, T, args.batch, K, args.gamma, args.lam)
                          for m in ("APG", "MIX")}
        for m, st in spreads[panel].items():
            print(f"  [{panel}] grad spread at init {m}: tr Cov {st['trace_cov']:.4g}, ||E g||^2 {st['mean_sq']:.4g}, "
                  f"cos(E g, true grad) {st['cos_to_true']:.3f}")
    elapsed = time.time() - t0
    title = (f"Tabular MDP S={args.states} A={args.actions} (Dirichlet(1) transitions, U(0,1) rewards), "
             f"gamma={args.gamma}, lambda={args.lam}, T={T}, B={args.batch}, Adam lr={args.lr}; mean ± std over {n_seeds} seeds")
    plot(results, refs, Path(args.png), title)
    command = "python tools/study_tabular.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_md(Path(args.md), command.strip(), args, T, iters, n_seeds, refs, results, spreads, elapsed)
    print(f"wrote {args.md} and {args.png} ({elapsed:.0f} s)")
    return results, spreads, refs


def write_md(path: Path, command, args, T, iters, n_seeds, refs, results, spreads, elapsed):
    def at(runs, frac):
        k = int(round(frac * (len(runs["iters"]) - 1)))
        y = runs["returns"][:, k]
        return runs["iters"][k], y.mean(), y.std()

    L = ["# Tabular MIX vs full-length APG (paper section 4.1, Fig. 3)", "",
         f"Command: `{command}` ({elapsed:.0f} s on 2 CPU cores)", "",
         "![tabular](study_tabular.png)", "",
         "## Setup", "",
         f"- MDP: {args.states} states, {args.actions} actions, P(.|s,a) ~ Dirichlet(1) (numpy seed {args.mdp_seed}), "
         f"r(s,a) ~ U(0,1), p0 uniform; gamma = {args.gamma}; lambda = {args.lam}. One fixed MDP; the {n_seeds} seeds "
         "vary the sampled start states and simulator noise.",
         "- Policy: softmax over tabular logits, initialised uniform (logits 0). Adam, the same lr "
         f"{args.lr} for every method, {iters} iterations; one gradient step per iteration from "
         f"B = {args.batch} parallel rollouts of T = {T} steps from one-hot start states s0 ~ p0.",
         "- Differentiable simulator: the rollout propagates the state distribution, "
         "d_{t+1} = sum_{s,a} d_t(s) pi(a|s) Phat_t(.|s,a), r_t = sum_{s,a} d_t(s) pi(a|s) r(s,a); "
         "the action expectation is exact (the tabular analogue of a reparameterised action). "
         "With K > 0, Phat_t(.|s,a) is the empirical distribution of K fresh samples from P(.|s,a) for every step and "
         "rollout (exogenous noise independent of the policy, so E[d_t] = p0 P_pi^t and APG is unbiased for the "
         "T-step return); K = 0 uses the exact expected dynamics Phat_t = P.",
         "- APG: gradient of mean_b sum_{t<T} gamma^t r_t through the whole trajectory, no critic.",
         "- MIX: gradient of the lambda-return R_0 of the same rollout (eq. 2/3, R_T = V(d_T)); V(d) = d·v with a "
         "tabular v fitted after every step by ridge least squares to the line-9 lambda-return targets "
         "(warm start, v0 = 0); no gradient into v. MIX-exactV: v = V_pi exactly (oracle ablation).",
         "- Metric: exact infinite-horizon return p0·V_pi (linear solve), every 10 iterations.", "",
         f"References: uniform policy J = {refs['uniform']:.3f}, optimum J* = {refs['optimal']:.3f}.", "",
         "## Results (exact return, mean ± std over seeds)", ""]
    fracs = [0.1, 0.25, 0.5, 1.0]
    for panel, by_method in results.items():
        L += [f"### {panel}", ""]
        first = next(iter(by_method.values()))
        hdr = [f"it {at(first, f)[0]}" for f in fracs]
        L.append("| method | " + " | ".join(hdr) + " |")
        L.append("|---" * (len(hdr) + 1) + "|")
        for m, runs in by_method.items():
            L.append(f"| {m} | " + " | ".join(f"{at(runs, f)[1]:.3f} ± {at(runs, f)[2]:.3f}" for f in fracs) + " |")
        L += ["", "Gradient spread at the initial (uniform) policy, 200 estimates (MIX with exact V):", "",
              "| estimator | tr Cov | ‖E g‖² | tr Cov / ‖E g‖² | cos(E g, exact ∇J) |", "|---|---|---|---|---|"]
        for m, st in spreads[panel].items():
            L.append(f"| {m} | {st['trace_cov']:.4g} | {st['mean_sq']:.4g} | {st['rel']:.3g} | {st['cos_to_true']:.3f} |")
        L.append("")
    L += ["<!-- notes -->"]
    old = path.read_text() if path.exists() else ""
    notes = old.split("<!-- notes -->", 1)[1] if "<!-- notes -->" in old else "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(L) + notes)


if __name__ == "__main__":
    main()
