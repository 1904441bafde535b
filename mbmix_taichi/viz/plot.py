"""Learning curves from run directories (``config.json`` + ``metrics.csv``).

Runs of one configuration (same task and algorithm in ``config.json``; typically several
seeds) form a group drawn as its mean with a min-max (or standard-deviation) band; every
algorithm keeps one colour across all panels. Panels: one row per (task, metric) with the
metrics ``return`` and ``score`` (a metric missing from every run is skipped), one column
per x axis (``env_steps``: simulator steps; ``wall_time``: seconds).
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MbmixError, OptionError

X_AXES = ("env_steps", "wall_time")
METRICS = ("return", "score")
X_LABELS = {"env_steps": "simulator steps", "wall_time": "wall time [s]", "iteration": "iteration"}
PLOT_EXTS = (".png", ".pdf", ".svg")
LINESTYLES = ["-", "--", ":", "-."]  # configurations of one algorithm (different task options)
# matplotlib's tab10: one colour per algorithm, the same in every plot for the known ones
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]
ALGO_COLORS = {"mbmix": "#1f77b4", "bptt": "#d62728", "shac": "#2ca02c", "mix": "#ff7f0e",
               "mbmix-mse": "#9467bd", "ppo": "#8c564b", "sac": "#e377c2"}


def algo_colors(algos) -> dict:
    """Colour of each algorithm: fixed for the known ones, the unused palette colours for others."""
    out = {a: ALGO_COLORS[a] for a in algos if a in ALGO_COLORS}
    free = [c for c in PALETTE if c not in out.values()] or PALETTE
    for i, a in enumerate(a for a in algos if a not in out):
        out[a] = free[i % len(free)]
    return out


class PlotError(MbmixError):
    """A plot request that cannot be carried out (missing run, unreadable metrics, ...)."""


class EmptyRunError(PlotError):
    """A run directory whose metrics.csv has no rows yet (skipped when other runs have some)."""


@dataclass
class RunCurves:
    path: Path
    task: str
    algo: str
    seed: object
    columns: dict = field(default_factory=dict)  # name -> float array (NaN where empty)
    task_options: dict = field(default_factory=dict)

    @property
    def options_key(self) -> str:
        return json.dumps(self.task_options, sort_keys=True, default=str)

    @property
    def label(self) -> str:
        return self.algo


def _float(x: str) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def load_run(run_dir) -> RunCurves:
    """Read one run directory; PlotError (one line) when it is not a usable run."""
    p = Path(str(run_dir))
    if not p.exists():
        raise PlotError(f"run directory {str(p)!r} does not exist")
    if not p.is_dir():
        raise PlotError(f"{str(p)!r} is not a run directory (not a folder)")
    metrics = p / "metrics.csv"
    if not metrics.is_file():
        raise PlotError(f"{str(p)!r} has no metrics.csv; is it a run directory written by `mbmix-taichi train`?")
    config = {}
    if (p / "config.json").is_file():
        try:
            config = json.loads((p / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise PlotError(f"cannot read {str(p / 'config.json')!r}: {exc}") from exc
    try:
        with metrics.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise PlotError(f"cannot read {str(metrics)!r}: {exc}") from exc
    if not rows:
        raise EmptyRunError(f"{str(metrics)!r} has no rows yet (the run has not finished an iteration)")
    names = [n for n in rows[0].keys() if n is not None]
    columns = {n: np.array([_float(r.get(n)) for r in rows], dtype=float) for n in names}
    algo = config.get("algo") or config.get("algorithm") or "run"
    task = config.get("task") or "?"
    opts = config.get("task_options") or {}
    return RunCurves(path=p, task=str(task), algo=str(algo), seed=config.get("seed"), columns=columns,
               task_options=dict(opts) if isinstance(opts, dict) else {})


def group_runs(runs):
    """{(task, algo): [runs]} in first-seen order (the seeds of one configuration).

    Runs of one task and algorithm with different task options form separate groups, keyed
    (task, algo, options label)."""
    variants = {}
    for r in runs:
        variants.setdefault((r.task, r.algo), {}).setdefault(r.options_key, r.task_options)
    groups = {}
    for r in runs:
        opts = variants[(r.task, r.algo)]
        if len(opts) == 1:
            key = (r.task, r.algo)
        else:  # name only the options that differ between this algorithm's runs
            differ = sorted({k for o in opts.values() for k in o
                             if len({json.dumps(v.get(k), default=str) for v in opts.values()}) > 1})
            key = (r.task, r.algo, " ".join(f"{k}={r.task_options.get(k)}" for k in differ))
        groups.setdefault(key, []).append(r)
    return groups


def _smooth(y: np.ndarray, k: int) -> np.ndarray:
    if k <= 1 or len(y) < 2:
        return y
    out = np.empty_like(y)
    for i in range(len(y)):  # trailing window mean, ignoring NaN
        w = y[max(0, i - k + 1): i + 1]
        w = w[np.isfinite(w)]
        out[i] = w.mean() if len(w) else np.nan
    return out


def _curve(run: RunCurves, x: str, y: str, smooth: int):
    if x not in run.columns or y not in run.columns:
        return None
    xs, ys = run.columns[x], _smooth(run.columns[y], smooth)
    ok = np.isfinite(xs) & np.isfinite(ys)
    if ok.sum() == 0:
        return None
    xs, ys = xs[ok], ys[ok]
    order = np.argsort(xs, kind="stable")
    return xs[order], ys[order]


def aggregate(curves, band: str = "minmax", points: int = 200):
    """Mean and band of curves [(x, y)] on a common x grid (the range all curves cover).

    One curve is returned as is (band = the curve). Returns (x, mean, low, high)."""
    if len(curves) == 1:
        x, y = curves[0]
        return x, y, y, y
    lo = max(c[0][0] for c in curves)
    hi = min(c[0][-1] for c in curves)
    if not hi > lo:  # the runs do not overlap: fall back to each run's own points
        x = np.unique(np.concatenate([c[0] for c in curves]))
        lo, hi = x[0], x[-1]
    same = all(len(c[0]) == len(curves[0][0]) and np.allclose(c[0], curves[0][0]) for c in curves)
    grid = curves[0][0] if same else np.linspace(lo, hi, points)
    ys = np.stack([np.interp(grid, c[0], c[1], left=np.nan, right=np.nan) for c in curves])
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(ys, 0)
            if band == "std":
                sd = np.nanstd(ys, 0)
                low, high = mean - sd, mean + sd
            else:
                low, high = np.nanmin(ys, 0), np.nanmax(ys, 0)
    return grid, mean, low, high


def plot_runs(run_dirs, out, x=None, band: str = "minmax", smooth: int = 1, title: str | None = None,
              dpi: int = 110) -> dict:
    """Draw learning curves of ``run_dirs`` into ``out`` (.png, .pdf or .svg).

    ``x``: "env_steps", "wall_time" or None for both. Returns a summary dict."""
    if not run_dirs:
        raise PlotError("give at least one run directory")
    out = Path(str(out))
    if out.suffix.lower() not in PLOT_EXTS:
        raise PlotError(f"cannot write {str(out)!r}: unknown extension {out.suffix!r}; use .png, .pdf or .svg")
    if band not in ("minmax", "std"):
        raise OptionError(f"band must be 'minmax' or 'std', got {band!r}")
    if smooth < 1:
        raise OptionError(f"smooth must be at least 1, got {smooth}")
    xs = list(X_AXES) if x is None else [x]
    for a in xs:
        if a not in X_AXES + ("iteration",):
            raise OptionError(f"x must be one of {', '.join(X_AXES + ('iteration',))}, got {a!r}")
    runs, reasons = [], {}  # reasons: skipped run dir -> why
    for d in run_dirs:
        try:
            r = load_run(d)
        except EmptyRunError:
            reasons[str(d)] = "metrics.csv has no rows yet (no iteration finished)"
            continue
        if not any(m in r.columns and np.isfinite(r.columns[m]).any() for m in METRICS):
            reasons[str(d)] = "no finished episode yet (return and score are empty in every row)"
            continue
        runs.append(r)
    skipped = list(reasons)
    if not runs:
        raise PlotError("no run has metrics yet (" + "; ".join(f"{d}: {why}" for d, why in reasons.items()) + ")")
    for a in xs:
        if not any(a in r.columns for r in runs):
            raise PlotError(f"no run has a column {a!r} in metrics.csv (columns: {', '.join(runs[0].columns)})")
    groups = group_runs(runs)
    algos = list(dict.fromkeys(r.algo for r in runs))
    colors = algo_colors(algos)
    tasks = list(dict.fromkeys(r.task for r in runs))
    rows = [(t, m) for t in tasks for m in METRICS
            if any(m in r.columns and np.isfinite(r.columns[m]).any() for r in runs if r.task == t)]
    if not rows:
        raise PlotError(f"no run has a 'return' or 'score' column with values (columns: {', '.join(runs[0].columns)})")

    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend needed

    fig = Figure(figsize=(5.2 * len(xs), 3.3 * len(rows)))
    axes = fig.subplots(len(rows), len(xs), squeeze=False)
    drawn = 0
    for i, (task, metric) in enumerate(rows):
        for j, xa in enumerate(xs):
            ax = axes[i][j]
            styles = {}
            for key, members in groups.items():
                gtask, algo = key[0], key[1]
                if gtask != task:
                    continue
                style = styles.setdefault(algo, [])
                style.append(key)
                linestyle = LINESTYLES[(len(style) - 1) % len(LINESTYLES)]
                curves = [c for c in (_curve(r, xa, metric, smooth) for r in members) if c is not None]
                if not curves:
                    continue
                gx, mean, low, high = aggregate(curves, band)
                name = algo if len(key) == 2 else f"{algo} [{key[2]}]"
                label = f"{name} ({len(curves)} seed{'s' if len(curves) > 1 else ''})"
                ax.plot(gx, mean, color=colors[algo], lw=1.8, ls=linestyle, label=label)
                if len(curves) > 1:
                    ax.fill_between(gx, low, high, color=colors[algo], alpha=0.22, lw=0)
                drawn += 1
            ax.set_xlabel(X_LABELS.get(xa, xa))
            ax.set_ylabel(metric)
            ax.set_title(f"{task}: {metric}", fontsize=10)
            ax.grid(True, alpha=0.3)
            if xa == "env_steps":
                ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
            if j == 0 and ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(str(out), dpi=dpi)
    except OSError as exc:
        raise PlotError(f"cannot write {str(out)!r}: {exc.strerror or exc}") from exc
    return {"out": str(out), "runs": len(runs), "groups": {"/".join(k): len(m) for k, m in groups.items()},
            "panels": len(rows) * len(xs), "curves": drawn, "skipped": skipped, "skipped_reasons": reasons}


__all__ = ["plot_runs", "algo_colors", "load_run", "group_runs", "aggregate", "PlotError", "RunCurves"]
