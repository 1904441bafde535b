"""`mbmix-taichi gradcheck TASK`: float64 central differences against the exact VJP, JVP and
Jacobian of one control step, at a state reached by random actions."""
from __future__ import annotations

import click


def check(task: str, num_envs: int = 2, seed: int = 0, warmup: int = 3, eps: float = 1e-7,
          jacobian_columns: int = 8, **options) -> dict:
    """Return the relative errors {jvp, vjp, jacobian, dot} of a task's step derivatives."""
    import torch

    import mbmix_taichi as mt

    env = mt.make(task, num_envs=num_envs, seed=seed, dtype="float64", **options)
    g = torch.Generator().manual_seed(seed)

    def rand_action():
        return torch.rand(num_envs, env.act_dim, generator=g, dtype=torch.float64) * 1.6 - 0.8

    for _ in range(warmup):
        env.step(rand_action())
    s, a = env.get_state(), rand_action()

    def fd(ts, ta):
        return (env.transition(s + eps * ts, a + eps * ta) - env.transition(s - eps * ts, a - eps * ta)) / (2 * eps)

    def rel(x, y):
        return ((x - y).abs().max() / y.abs().max().clamp_min(1e-12)).item()

    ts = torch.randn(s.shape, generator=g, dtype=torch.float64)
    ta = torch.randn(a.shape, generator=g, dtype=torch.float64)
    u = torch.randn(s.shape, generator=g, dtype=torch.float64)
    jv = env.jvp(s, a, ts, ta)
    fdv = fd(ts, ta)
    g_s, g_a = env.vjp(s, a, u)
    vjp_dir = (g_s * ts).sum(1) + (g_a * ta).sum(1)
    fd_dir = (u * fdv).sum(1)
    J_s, J_a = env.jacobian(s, a)
    cols = torch.randperm(env.state_dim, generator=g)[:jacobian_columns].tolist()
    jac_err = 0.0
    for c in cols:
        e = torch.zeros_like(s)
        e[:, c] = 1
        jac_err = max(jac_err, rel(J_s[:, :, c], fd(e, torch.zeros_like(a))))
    for c in range(env.act_dim):
        e = torch.zeros_like(a)
        e[:, c] = 1
        jac_err = max(jac_err, rel(J_a[:, :, c], fd(torch.zeros_like(s), e)))
    return {"jvp": rel(jv, fdv), "vjp": rel(vjp_dir, fd_dir), "jacobian": jac_err,
            "dot": rel((u * jv).sum(1), vjp_dir), "state_dim": env.state_dim}


@click.command()
@click.argument("task")
@click.option("--num-envs", default=2, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--eps", default="1e-6,1e-7,1e-8", show_default=True, help="central-difference steps (comma-separated)")
@click.option("--task-option", "-o", multiple=True, metavar="KEY=VALUE", help="task option (repeatable)")
def gradcheck(task, num_envs, seed, eps, task_option):
    """Check a task's VJP, JVP and Jacobian against float64 finite differences.

    Contact and friction make a control step piecewise smooth: a central difference that
    straddles a kink is not a derivative. Each quantity is therefore checked at several
    step sizes and the best agreement is reported with the step that gave it.
    """
    from .cli_util import parse_task_options
    from .errors import OptionError

    try:
        steps = [float(e) for e in str(eps).split(",")]
    except ValueError:
        raise OptionError(f"--eps must be comma-separated numbers, got {eps!r}") from None
    opts = parse_task_options(task_option)
    runs = [(e, check(task, num_envs=num_envs, seed=seed, eps=e, **opts)) for e in steps]
    click.echo(f"{task} (float64, state_dim {runs[0][1]['state_dim']}); relative max errors vs central differences:")
    worst = 0.0
    for k, label in (("jvp", "JVP"), ("vjp", "VJP (directional)"), ("jacobian", "Jacobian (sampled columns)"),
                     ("dot", "<u, J v> vs <J^T u, v>")):
        e, r = min(runs, key=lambda er: er[1][k])
        all_e = "  ".join(f"{x[1][k]:.1e}@{x[0]:g}" for x in runs)
        click.echo(f"  {label:28s} {r[k]:.2e} (eps {e:g}; all: {all_e})")
        if k != "dot":
            worst = max(worst, r[k])
    click.echo("OK" if worst < 1e-5 else "LARGE ERRORS")
