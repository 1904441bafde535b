"""Learning-curve plots: grouping of seeds, colours per algorithm, the PNG itself, errors,
the CLI, and the chain train -> plot -> render on one tiny real run."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

import mbmix_taichi as mt
from mbmix_taichi.errors import MbmixError
from mbmix_taichi.viz.plot import PlotError, aggregate, algo_colors, group_runs, load_run, plot_runs

import imageio.v3 as imageio

COLUMNS = ["iteration", "env_steps", "wall_time", "return", "score", "actor_loss", "critic_loss"]


def _write_run(path, task, algo, seed, iters=12, steps_per_iter=64, slope=1.0, wall_scale=1.0):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"task": task, "task_options": {}, "algo": algo, "seed": seed}))
    rng = np.random.default_rng(seed)
    with (path / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for i in range(1, iters + 1):
            ret = -10 + slope * i + rng.normal(0, 0.5)
            w.writerow([i, i * steps_per_iter, round(i * wall_scale * (1 + 0.1 * seed), 3), ret,
                        1 - np.exp(-0.1 * slope * i), 0.5 / i, ""])  # an empty critic_loss column
    return path


@pytest.fixture
def runs(tmp_path):
    dirs = [_write_run(tmp_path / f"mbmix-s{s}", "cloth-fold", "mbmix", s, slope=1.0) for s in range(3)]
    dirs += [_write_run(tmp_path / f"shac-s{s}", "cloth-fold", "shac", s, slope=0.5, wall_scale=0.5)
             for s in range(3)]
    return dirs


def _color_pixels(img, hex_color, tol=40):
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(img[..., :3].astype(int) - rgb).max(-1) < tol).sum())


def test_load_and_group(runs):
    r = load_run(runs[0])
    assert r.task == "cloth-fold" and r.algo == "mbmix" and r.seed == 0
    assert r.columns["env_steps"][-1] == 12 * 64 and np.isnan(r.columns["critic_loss"]).all()
    groups = group_runs([load_run(d) for d in runs])
    assert {k: len(v) for k, v in groups.items()} == {("cloth-fold", "mbmix"): 3, ("cloth-fold", "shac"): 3}


def test_different_task_options_are_separate_groups(tmp_path):
    a = _write_run(tmp_path / "a", "cloth-fold", "mbmix", 0)
    b = _write_run(tmp_path / "b", "cloth-fold", "mbmix", 1)
    c = _write_run(tmp_path / "c", "cloth-fold", "mbmix", 0)
    for d, mesh in ((a, None), (b, None), (c, "tshirt")):
        cfg = json.loads((d / "config.json").read_text())
        cfg["task_options"] = {"mesh": mesh, "resolution": 8}
        (d / "config.json").write_text(json.dumps(cfg))
    groups = group_runs([load_run(d) for d in (a, b, c)])
    assert {k: len(v) for k, v in groups.items()} == {("cloth-fold", "mbmix", "mesh=None"): 2,
                                                      ("cloth-fold", "mbmix", "mesh=tshirt"): 1}
    res = plot_runs([a, b, c], tmp_path / "opts.png")
    assert res["curves"] == 8


def test_algorithm_colours_are_stable():
    assert algo_colors(["shac", "mbmix"])["mbmix"] == algo_colors(["mbmix"])["mbmix"]
    c = algo_colors(["mine", "mbmix", "other"])
    assert len(set(c.values())) == 3


def test_aggregate_mean_and_band():
    x = np.arange(5.0)
    curves = [(x, x), (x, x + 2), (x, x + 4)]
    gx, mean, lo, hi = aggregate(curves)
    assert np.allclose(gx, x) and np.allclose(mean, x + 2) and np.allclose(lo, x) and np.allclose(hi, x + 4)
    _, mean, lo, hi = aggregate(curves, band="std")
    assert np.allclose(hi - mean, np.std([0, 2, 4]))
    # different x grids (wall time): interpolated on the range all runs cover
    gx, mean, _, _ = aggregate([(x, x), (x * 2, x * 2)])
    assert gx[0] == 0 and gx[-1] == 4 and np.allclose(mean, gx)


def test_plot_png(runs, tmp_path):
    out = tmp_path / "curves.png"
    res = plot_runs(runs, out, dpi=100)
    assert res["runs"] == 6 and res["panels"] == 4 and res["curves"] == 8  # 2 groups x 2 metrics x 2 axes
    img = imageio.imread(out)
    assert img.shape[:2] == (2 * 330, 2 * 520)  # figsize (5.2 * 2, 3.3 * 2) at 100 dpi
    assert img[..., :3].std() > 20
    # one colour per algorithm: lines of both, and the lighter min-max bands
    colors = algo_colors(["mbmix", "shac"])
    assert colors["mbmix"] != colors["shac"]
    assert _color_pixels(img, colors["mbmix"]) > 300 and _color_pixels(img, colors["shac"]) > 300
    band = np.array([int(colors["mbmix"][i:i + 2], 16) for i in (1, 3, 5)]) * 0.22 + 255 * 0.78
    assert _color_pixels(img, "#%02x%02x%02x" % tuple(band.round().astype(int)), tol=12) > 1000

    one = tmp_path / "steps.png"
    res = plot_runs(runs[:1], one, x="env_steps", dpi=100)
    assert res["panels"] == 2 and imageio.imread(one).shape[:2] == (2 * 330, 520)


def test_plot_skips_empty_runs_and_errors(runs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    (empty / "metrics.csv").write_text(",".join(COLUMNS) + "\n")
    unfinished = tmp_path / "unfinished"  # iterations done, but no episode finished yet
    unfinished.mkdir()
    (unfinished / "config.json").write_text('{"task": "hopper", "algo": "mbmix"}')
    cols = {c: "1" for c in COLUMNS}
    cols["return"] = cols["score"] = ""
    (unfinished / "metrics.csv").write_text(",".join(COLUMNS) + "\n" + ",".join(cols[c] for c in COLUMNS) + "\n")
    res = plot_runs([runs[0], empty, unfinished], tmp_path / "a.png")
    assert res["skipped"] == [str(empty), str(unfinished)]
    assert "no rows" in res["skipped_reasons"][str(empty)]
    assert "no finished episode" in res["skipped_reasons"][str(unfinished)]
    from mbmix_taichi.cli import main

    r = CliRunner().invoke(main, ["plot", str(runs[0]), str(empty), str(unfinished), "--out", str(tmp_path / "a.png")])
    assert r.exit_code == 0, r.output
    assert f"skipped {unfinished}: no finished episode yet" in r.output and f"skipped {empty}: metrics.csv" in r.output
    with pytest.raises(PlotError, match="no run has metrics yet"):
        plot_runs([empty], tmp_path / "b.png")
    with pytest.raises(PlotError, match="does not exist"):
        plot_runs([tmp_path / "missing"], tmp_path / "c.png")
    no_metrics = tmp_path / "no_metrics"
    no_metrics.mkdir()
    with pytest.raises(PlotError, match="no metrics.csv"):
        plot_runs([no_metrics], tmp_path / "d.png")
    with pytest.raises(PlotError, match="unknown extension"):
        plot_runs(runs, tmp_path / "e.jpg")
    with pytest.raises(MbmixError, match="x must be"):
        plot_runs(runs, tmp_path / "f.png", x="time")


def test_cli_plot(runs, tmp_path):
    from mbmix_taichi.cli import main

    out = tmp_path / "cli.png"
    r = CliRunner().invoke(main, ["plot", *map(str, runs), "--out", str(out), "--band", "std", "--smooth", "3"])
    assert r.exit_code == 0, r.output
    assert "cloth-fold/mbmix x3" in r.output and out.is_file()
    r = CliRunner().invoke(main, ["plot", str(tmp_path / "nope"), "--out", str(out)])
    assert r.exit_code == 2 and "does not exist" in r.output and "Traceback" not in r.output


def test_train_plot_render_a_real_run(tmp_path):
    from mbmix_taichi.learner import Run, resolve
    from mbmix_taichi.viz.render import render

    opts = {"resolution": 5, "episode_length": 6}
    cfg = resolve("cloth-fold", "bptt", overrides={"iterations": 2, "num_envs": 2, "seed": 0, "task_options": opts})
    run_dir = tmp_path / "run"
    Run(cfg, run_dir, progress=False).train()
    out = tmp_path / "real.png"
    res = plot_runs([run_dir], out)
    assert res["groups"] == {"cloth-fold/bptt": 1} and res["curves"] >= 2
    img = imageio.imread(out)
    assert _color_pixels(img, algo_colors(["bptt"])["bptt"]) > 100
    # the run directory renders with its trained policy
    res = render(str(run_dir), tmp_path / "real.gif", steps=3, width=96, height=64)
    assert res["task"] == "cloth-fold" and res["frames"] == 4
    assert imageio.imread(tmp_path / "real.gif").shape == (4, 64, 96, 3)
