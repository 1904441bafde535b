"""The simulators' figures on the device Taichi runs on (a GPU: TI_ARCH=cuda) -> docs/benchmarks_gpu.md.

    TI_ARCH=cuda python tools/bench_gpu.py [--quick] [--out docs/benchmarks_gpu.md]

In one process, side by side: cloth-fold and ant control steps per wall second of the forward
step, forward + VJP, JVP and full Jacobians from 1 to 4096 envs (float32 and float64; every
timed call ends with a device synchronisation), the VJP/forward time ratio, kernel launches per
control step, and Warp's cloth benchmark workload in both kernel layouts. The same command runs
on the CPU (it then measures what tools/bench_cloth.py and tools/bench_articulated.py measure in
more detail). Each section is written as soon as it is measured, so a run stopped by a time
limit keeps what it finished.
"""
import argparse
import time
from pathlib import Path

from mbmix_taichi import _ti
from mbmix_taichi.bench import bench_peer, bench_task, machine, peer_table, task_table

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--quick", action="store_true", help="fewer env counts and sizes")
ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "benchmarks_gpu.md"))
args = ap.parse_args()

arch = _ti.init("auto")
envs = (1, 64, 1024) if args.quick else (1, 64, 1024, 4096)
sizes = (32, 128) if args.quick else (32, 64, 128, 256)
t0 = time.time()
head = [f"# Simulator benchmarks on {arch}", "",
        f"Command: `{'TI_ARCH=cuda ' if arch == 'cuda' else ''}python tools/bench_gpu.py"
        f"{' --quick' if args.quick else ''}`.", f"Machine: {machine()}.", "",
        "Control steps per wall second, best of several repeats, every timed call ended by a device "
        "synchronisation; all figures of this file from one run.", ""]
sections = []


def write(title, table):
    sections.extend([f"## {title}", f"({time.time() - t0:.0f} s into the run)", "", table, ""])
    Path(args.out).write_text("\n".join(head + sections) + "\n")
    print(f"## {title}\n{table}\n", flush=True)


write("cloth-fold, float32", task_table(bench_task("cloth-fold", envs, jacobian_envs=(1, 64))))
write("ant, float32", task_table(bench_task("ant", envs, jacobian_envs=(1, 64))))
write("ant, float64", task_table(bench_task("ant", envs, jacobian_envs=(1, 64), dtype="float64")))
write("cloth-fold, float64", task_table(bench_task("cloth-fold", envs, jacobian_envs=(1, 64), dtype="float64")))
# the layout `auto` picks here (wide on a GPU, fused on a CPU) at every size, the other one at the small sizes
# (on a GPU the fused layout runs one thread per cloth: 0.4 M particle-substeps/s, 690 ms a frame at d = 128)
other = "fused" if arch == "cuda" else "wide"
write("Warp's cloth workload, float32, one cloth",
      peer_table(bench_peer(sizes) + bench_peer(sizes[:2], layout=other)))
write("Warp's cloth workload, float32, 64 cloths at once", peer_table(bench_peer(sizes[:2], num_cloths=64)))
print("wrote", args.out, f"({time.time() - t0:.0f} s)")
