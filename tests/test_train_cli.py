"""`mbmix-taichi train` / `eval`: a tiny run end to end, and the one-line error paths."""
import json

import pytest
from click.testing import CliRunner

import _toy  # noqa: F401  (registers toy-reach)
from mbmix_taichi.cli import main

FAST = ["--task-option", "episode_length=8", "--num-envs", "4", "--quiet"]


def _invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _one_line_error(res, *words):
    assert res.exit_code == 2, res.output
    lines = [l for l in res.output.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    assert "Traceback" not in res.output
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture()
def cfg_file(tmp_path):
    p = tmp_path / "fast.toml"
    p.write_text('actor_hidden = [16, 16]\ncritic_hidden = [16, 16]\ncritic_iterations = 2\nhorizon = 8\n'
                 'model_hidden = [16, 16]\nmodel_updates = 4\nrollout_batch = 16\nmodel_horizon = 4\n'
                 'collect_steps = 4\nensemble_size = 2\neval_episodes = 3\n')
    return p


def test_train_eval_resume(tmp_path, cfg_file):
    out = tmp_path / "run"
    res = _invoke("train", "toy-reach", "--algo", "mbmix", "--iterations", "2", "--out", str(out),
                  "--config", str(cfg_file), "--seed", "3", *FAST)
    assert res.exit_code == 0, res.output
    for f in ("config.json", "metrics.csv", "checkpoint.pt", "policy.pt"):
        assert (out / f).is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["task"] == "toy-reach" and cfg["algo"] == "mbmix" and cfg["seed"] == 3
    assert cfg["task_options"] == {"episode_length": 8} and cfg["num_envs"] == 4 and cfg["horizon"] == 8
    # extend the finished run by two iterations
    res = _invoke("train", "toy-reach", "--out", str(out), "--resume", "--iterations", "4", "--quiet")
    assert res.exit_code == 0, res.output
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 1 + 4
    res = _invoke("eval", str(out), "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert set(data) == {"trained", "untrained"} and "score" in data["trained"]
    res = _invoke("eval", str(out), "--episodes", "2")
    assert "trained" in res.output and "untrained" in res.output


def test_error_paths(tmp_path):
    _one_line_error(_invoke("train", "toy-reach", "--algo", "trpo", "--out", str(tmp_path / "x")), "trpo")  # ppo, sac: SB3
    _one_line_error(_invoke("train", "no-such-task", "--out", str(tmp_path / "x")), "no-such-task")
    _one_line_error(_invoke("train", "toy-reach", "--task-option", "colour=3", "--out", str(tmp_path / "x")), "colour")
    _one_line_error(_invoke("train", "toy-reach", "--task-option", "nonsense", "--out", str(tmp_path / "x")))
    bad = tmp_path / "bad.json"
    bad.write_text('{"learning_rate_typo": 1}')
    _one_line_error(_invoke("train", "toy-reach", "--config", str(bad), "--out", str(tmp_path / "x")), "learning_rate_typo")
    bad.write_text("{not json")
    _one_line_error(_invoke("train", "toy-reach", "--config", str(bad), "--out", str(tmp_path / "x")))
    _one_line_error(_invoke("train", "toy-reach", "--resume", "--out", str(tmp_path / "empty")), "checkpoint")
    _one_line_error(_invoke("eval", str(tmp_path / "missing")), "does not exist")
    (tmp_path / "norun").mkdir()
    _one_line_error(_invoke("eval", str(tmp_path / "norun")), "config.json")


def test_corrupt_run_dir(tmp_path, cfg_file):
    out = tmp_path / "run"
    res = _invoke("train", "toy-reach", "--algo", "shac", "--iterations", "1", "--out", str(out),
                  "--config", str(cfg_file), *FAST)
    assert res.exit_code == 0, res.output
    (out / "policy.pt").write_bytes(b"garbage")
    _one_line_error(_invoke("eval", str(out)), "policy.pt")
    (out / "checkpoint.pt").write_bytes(b"\x00" * 10)
    _one_line_error(_invoke("train", "toy-reach", "--out", str(out), "--resume", "--quiet"), "checkpoint.pt")
    (out / "config.json").write_text("{")
    _one_line_error(_invoke("eval", str(out)), "config.json")


def test_existing_run_is_never_replaced_by_accident(tmp_path, cfg_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ("train", "toy-reach", "--algo", "shac", "--iterations", "1", "--config", str(cfg_file), *FAST)
    res = _invoke(*args)
    assert res.exit_code == 0, res.output
    first = tmp_path / "runs" / "toy-reach-shac-s0"
    assert "runs/toy-reach-shac-s0" in res.output and (first / "policy.pt").is_file()
    policy = (first / "policy.pt").read_bytes()
    # the same command again: a new numbered directory, the first run untouched
    res = _invoke(*args)
    assert res.exit_code == 0, res.output
    second = tmp_path / "runs" / "toy-reach-shac-s0-2"
    assert "runs/toy-reach-shac-s0-2" in res.output and (second / "policy.pt").is_file()
    assert (first / "policy.pt").read_bytes() == policy
    # an explicit --out that holds a run: refused, unless --overwrite
    _one_line_error(_invoke(*args, "--out", str(first)), "--resume", "--overwrite")
    assert (first / "policy.pt").read_bytes() == policy
    _one_line_error(_invoke(*args, "--out", str(first), "--resume", "--overwrite"), "--overwrite")
    res = _invoke(*args, "--out", str(first), "--overwrite", "--seed", "1")
    assert res.exit_code == 0, res.output
    assert json.loads((first / "config.json").read_text())["seed"] == 1
    assert len((first / "metrics.csv").read_text().strip().splitlines()) == 1 + 1


def test_reporting_without_a_finished_episode_and_without_a_terminal(tmp_path, cfg_file):
    """Episodes of 50 steps, 4 steps collected per iteration: after 2 iterations no episode has
    finished. The output says so (no 'nan'); with no terminal a plain progress line appears;
    log.txt has the run's start and end lines."""
    out = tmp_path / "run"
    res = _invoke("train", "toy-reach", "--algo", "shac", "--iterations", "2", "--out", str(out),
                  "--config", str(cfg_file), "--task-option", "episode_length=50", "--num-envs", "2")
    assert res.exit_code == 0, res.output
    assert "nan" not in res.output.lower(), res.output
    assert "no finished episode yet" in res.output.splitlines()[-1]
    assert "shac toy-reach: iteration 1/2" in res.output and "iteration 2/2" in res.output
    log = (out / "log.txt").read_text().splitlines()
    assert "start: task toy-reach, algo shac" in log[0] and "end: iteration 2/2" in log[-1]
    import taichi
    import torch

    assert "code: mbmix-taichi" in log[0] and f"torch {torch.__version__}" in log[0], log[0]
    tv = taichi.__version__
    assert "taichi " + (".".join(map(str, tv)) if isinstance(tv, tuple) else str(tv)) in log[0] and ("commit " in log[0] or "not a git checkout" in log[0])
    assert "no finished episode yet" in log[-1] and "policy.pt" in log[-1]
