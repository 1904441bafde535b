"""Fig. 4 of the paper re-measured: final return against the maximum trajectory length H, for
SHAC and MIX, from the summary tables of `tools/sweep.py` runs (one sweep per algorithm and H,
the same simulator-step budget at every H).

    for H in 8 16 32 64 128; do python tools/sweep.py --tasks cartpole-swingup --algos shac \\
        --seeds 0,1,2 --set horizon=$H --set iterations=$((256000 / (64 * H))) --out runs/fig4/shac-H$H; done
    (the same for mix: 8 envs, 64,000 steps)
    python tools/study_horizon.py runs/fig4 [--out docs/study_horizon]

Reads every <dir>/*/summary.csv under the given folder, groups its rows by (task, algo, horizon)
and writes a markdown table (mean +- std over seeds, each seed, simulator steps) and a plot. The
spread across H of an algorithm is max - min of its per-H mean returns.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def read_rows(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("*/summary.csv")):
        with open(path) as fh:
            for r in csv.DictReader(fh):
                over = json.loads(r["overrides"]) if r["overrides"] else {}
                if "horizon" not in over:
                    raise SystemExit(f"{path}: row {r['name']} has no horizon override")
                rows.append({"task": r["task"], "algo": r["algo"], "H": int(over["horizon"]), "seed": int(r["seed"]),
                             "return": float(r["return"]), "env_steps": int(r["env_steps"]),
                             "cpu": float(r["cpu_time"])})
    if not rows:
        raise SystemExit(f"no */summary.csv under {folder}")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder")
    p.add_argument("--out", default=str(ROOT / "docs" / "study_horizon"))
    a = p.parse_args(argv)
    rows = read_rows(Path(a.folder))
    groups = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["algo"], r["H"])].append(r)
    tasks = sorted({k[0] for k in groups})
    algos = sorted({k[1] for k in groups})
    cmd = "python tools/study_horizon.py " + " ".join(sys.argv[1:] if argv is None else argv)
    L = ["# Fig. 4 re-measured: final return against the maximum trajectory length H", "",
         f"Command: `{cmd}` (the sweeps it reads are listed in the tool's docstring and in docs/locomotion.md).", "",
         "Final return: the deterministic policy's mean return over 8 evaluation episodes (eval seed 777) "
         "after the whole budget; mean +- std over seeds.", "",
         "| task | algo | H | simulator steps | return, mean +- std | per seed | CPU s per run |",
         "|---|---|---:|---:|---|---|---:|"]
    spread = {}
    for t in tasks:
        for al in algos:
            means = []
            for H in sorted({k[2] for k in groups if k[0] == t and k[1] == al}):
                g = sorted(groups[(t, al, H)], key=lambda r: r["seed"])
                ret = [r["return"] for r in g]
                m = statistics.mean(ret)
                sd = statistics.stdev(ret) if len(ret) > 1 else math.nan
                means.append((H, m, sd))
                L.append(f"| {t} | {al} | {H} | {g[0]['env_steps']:,} | {m:.0f} +- {sd:.0f} | "
                         + ", ".join(f"{x:.0f} (s{r['seed']})" for x, r in zip(ret, g))
                         + f" | {statistics.mean(r['cpu'] for r in g):.0f} |")
            if means:
                spread[(t, al)] = means
    L += ["", "| task | algo | spread across H (max - min of the means) | worst H | best H |", "|---|---|---:|---:|---:|"]
    for (t, al), means in spread.items():
        best = max(means, key=lambda x: x[1])
        worst = min(means, key=lambda x: x[1])
        L.append(f"| {t} | {al} | {best[1] - worst[1]:.0f} | {worst[0]} ({worst[1]:.0f}) | {best[0]} ({best[1]:.0f}) |")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        for al in algos:
            if (t, al) not in spread:
                continue
            Hs, ms, sds = zip(*spread[(t, al)])
            ax.errorbar(Hs, ms, yerr=[0 if math.isnan(s) else s for s in sds], marker="o", capsize=3, label=al)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("maximum trajectory length H")
        ax.set_ylabel("final return (8 eval episodes)")
        ax.set_title(t)
        ax.legend()
    fig.tight_layout()
    fig.savefig(a.out + ".png", dpi=110)
    L += ["", f"![return against H]({Path(a.out).name}.png)", ""]
    Path(a.out + ".md").write_text("\n".join(L) + "\n")
    print("\n".join(L))


if __name__ == "__main__":
    main()
