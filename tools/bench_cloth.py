"""Cloth simulator benchmark -> docs/benchmarks.md (cloth section).

    python tools/bench_cloth.py            # full run (a few minutes on 2 cores)
    python tools/bench_cloth.py --quick    # fewer env counts, smaller peer sizes

Measures, side by side in one run: control steps/s of the forward step, forward + VJP, JVP and
full Jacobians of cloth-fold at 1, 16, 64 envs, the VJP/forward time ratio, kernel launches per
control step, and Warp's cloth benchmark workload (see mbmix_taichi/bench.py).
"""
import argparse
import sys
import time
from pathlib import Path

from mbmix_taichi.bench import bench_peer, bench_task, machine, peer_table, task_table

ap = argparse.ArgumentParser()
ap.add_argument("--quick", action="store_true")
ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"))
args = ap.parse_args()

envs = (1, 16) if args.quick else (1, 16, 64)
sizes = (32, 64) if args.quick else (32, 64, 128)
t0 = time.time()
rows = bench_task("cloth-fold", envs, jacobian_envs=(1, 16))
rows64 = bench_task("cloth-fold", (1, 16), jacobian_envs=(), dtype="float64")
peer = bench_peer(sizes, layout="fused") + bench_peer(sizes, layout="wide") + bench_peer(sizes, num_cloths=2)
text = f"""# Benchmarks

## Cloth simulator

Command: `python tools/bench_cloth.py{' --quick' if args.quick else ''}` ({time.time() - t0:.0f} s).
Machine: {machine()}. Best of several repeats; all figures of a table from one run.

### cloth-fold (10 x 10 cloth, 16 substeps per control step), float32

{task_table(rows)}

### cloth-fold, float64

{task_table(rows64)}

### Warp's cloth benchmark workload (peer mode, float32)

Warp's CPU backend does 12.6 / 16.9 / 18.4 M particle-substeps/s at d = 32 / 64 / 128 on this
2-core machine, Warp's own Taichi port 2.6 / 7.4 / 11.2 (figures from the issue, measured
here earlier). Ours: one cloth (one env) with the fused kernel layout (one thread runs all
substeps) and with the wide layout (each substep spread over both cores), and two cloths at
once (two envs, one core each):

{peer_table(peer)}
"""
out = Path(args.out)
if out.exists():  # keep other sections (e.g. articulated, learner) written by other tools
    old = out.read_text()
    if "\n## " in old.split("## Cloth simulator", 1)[-1]:
        rest = "\n## " + old.split("## Cloth simulator", 1)[-1].split("\n## ", 1)[1]
        text += rest
out.write_text(text)
print(text)
sys.exit(0)
