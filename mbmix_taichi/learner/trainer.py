"""Runs: run directory, metrics, checkpoints, resume, evaluation, loading policies.

Run directory format (the renderer and plotter rely on it):
  config.json     the resolved Config (task, task_options as given, algo, seed, num_envs, ...)
  task.json       the task and ALL its options as the run resolved them (defaults included):
                  resume, eval and render use these, so a later change of a task's defaults
                  does not change what an existing run continues or is evaluated on
  metrics.csv     one row per iteration: iteration, env_steps, wall_time, return, score, losses...
  checkpoint.pt   everything needed to resume (written atomically: temp file + os.replace)
  policy.pt       the final policy: {"config", "actor", "obs_norm", "obs_dim", "act_dim"}
                  (ppo/sac runs: {"config", "sb3_policy", "obs_rms", "obs_dim", "act_dim"}, see sb3.py)
  log.txt         run start (with the code version: package, git commit, torch, Taichi) and end
                  lines (timestamped), skipped updates, interrupts
  events.*        TensorBoard events (x axis: env steps, like SB3's curves), written when
                  tensorboard is installed: pip install "mbmix-taichi[tensorboard]" (also in [rl])
"""
from __future__ import annotations

import csv
import json
import math
import os
import pickle
import re
import signal
import sys
import time
from pathlib import Path

import torch

from ..errors import OptionError
from .agent import build_networks
from .algos import make_agent
from .config import Config, RunError, from_dict
from .sb3_presets import SB3_ALGOS

#: with no terminal, a plain progress line at most this often (and at the first and last iteration)
PLAIN_PROGRESS_SECONDS = 10.0

METRIC_COLUMNS = ["iteration", "env_steps", "wall_time", "return", "score", "actor_loss", "critic_loss",
                  "model_loss", "model_jac_loss", "grad_norm", "skipped", "blowups", "truncated", "branch",
                  "steps_per_s"]


def metric_columns(cfg: Config) -> list[str]:
    """The metrics.csv columns of a run: the common ones, and for MB-MIX the model's policy-gradient
    fidelity (cosine against the simulator's) at every branch length k (and the adjoint-pair loss
    when it is on)."""
    if cfg.algo.startswith("mbmix"):
        adjoint = ["model_adjoint_loss"] if cfg.sobolev_adjoint_alpha > 0 else []
        return METRIC_COLUMNS + adjoint + [f"fidelity_k{k}" for k in range(1, cfg.model_horizon + 1)]
    if cfg.algo in SB3_ALGOS:  # SB3's own train/ values (learner/sb3.py)
        from .sb3 import EXTRA_COLUMNS

        return METRIC_COLUMNS + EXTRA_COLUMNS[cfg.algo]
    return list(METRIC_COLUMNS)


#: files whose presence means a directory holds a run (train refuses to replace them by accident)
#: the task and all its resolved options, as the run started
TASK_FILE = "task.json"
RUN_FILES = ("config.json", "metrics.csv", "checkpoint.pt", "policy.pt", "task.json")


def holds_run(path) -> bool:
    return any((Path(path) / name).exists() for name in RUN_FILES)


def free_run_dir(base) -> Path:
    """`base` if it holds no run, else the first of base-2, base-3, ... that holds none."""
    base = Path(base)
    k = 1
    path = base
    while holds_run(path):
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


def make_env(cfg: Config, num_envs: int | None = None, seed: int | None = None):
    """The training env. The learners keep their networks, buffers and the simulator's tensors on the
    CPU, so the simulator runs there too, also where torch sees a GPU: at the trainers' batch sizes
    (1-64 envs) the GPU simulators are no faster (docs/benchmarks_gpu.md: ant at 64 envs is slower
    on an H200 than on two CPU cores). `mt.make(...)` gives a GPU env for your own code."""
    import mbmix_taichi as mt

    env = mt.make(cfg.task, num_envs=num_envs or cfg.num_envs, seed=cfg.seed if seed is None else seed,
                  arch="cpu", **cfg.task_options)
    if env.device.type != "cpu":  # TI_ARCH=cuda overrides the arch asked for
        raise OptionError(f"training runs the simulator on the CPU, beside the learner; TI_ARCH="
                          f"{os.environ.get('TI_ARCH')!r} puts it on {env.device}: unset TI_ARCH to train")
    return env


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def describe(row: dict) -> str:
    """'return -9.7, score 0.6' of a metrics row, or why there is none yet."""
    ret, score = row.get("return", math.nan), row.get("score", math.nan)
    if not (isinstance(ret, (int, float)) and math.isfinite(ret)):
        return "no finished episode yet"
    text = f"return {ret:.4g}"
    if isinstance(score, (int, float)) and math.isfinite(score):
        text += f", score {score:.4g}"
    return text


def _fmt(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v)


class Run:
    """One training run in `out_dir`. `train()` runs until cfg.iterations (or `stop_after`
    more iterations, or Ctrl-C), writing metrics, checkpoints and the final policy."""

    def __init__(self, cfg: Config | None, out_dir, resume: bool = False, progress: bool = True,
                 overwrite: bool = False):
        self.out = Path(out_dir)
        self.progress = progress
        refuse_if_in_use(self.out)  # another process's run: say that before anything else
        if not resume and holds_run(self.out) and not overwrite:
            raise RunError(f"{str(self.out)!r} already holds a run; continue it with --resume, replace it "
                           f"with --overwrite, or choose another --out")
        if resume:
            if not (self.out / "checkpoint.pt").is_file():
                raise RunError(f"cannot resume: no checkpoint.pt in {str(self.out)!r}")
            saved = read_config(self.out)
            if cfg is not None and cfg.iterations != saved.iterations:
                saved.iterations = cfg.iterations  # allow extending a finished run
            cfg = saved
            if cfg.algo in SB3_ALGOS:
                from .sb3 import RESUME_REFUSED

                raise RunError(RESUME_REFUSED.format(algo=cfg.algo))
        if cfg.algo in SB3_ALGOS:  # the missing extra is named before the run directory is made
            from .sb3 import need_sb3

            need_sb3(cfg.algo)
        self._lock = lock_run_dir(self.out)  # held for this run's life: a second trainer refuses at once
        self.cfg = cfg
        self.columns = metric_columns(cfg)
        if cfg.torch_threads > 0:
            torch.set_num_threads(cfg.torch_threads)
        self.env = make_env(cfg)  # on resume cfg.task_options are the run's resolved ones (read_config)
        self.agent = make_agent(cfg, self.env)
        self.agent.log = self.log
        self.rows: list[dict] = []
        self.wall = 0.0
        self.out.mkdir(parents=True, exist_ok=True)
        if not resume:  # overwrite=True: a fresh run replaces whatever an earlier run left here
            for name in RUN_FILES + ("log.txt",):
                (self.out / name).unlink(missing_ok=True)
            for old_events in self.out.glob("events.out.tfevents.*"):
                old_events.unlink()
        if resume:
            ckpt = load_checkpoint(self.out)
            try:
                self.agent.load_state_dict(ckpt["agent"])
            except Exception as exc:
                raise RunError(f"checkpoint in {self.out} does not fit this run's config: {exc}") from exc
            self.rows = ckpt["rows"]
            self.wall = ckpt["wall_time"]
        given = dict(cfg.task_options)
        if resume:  # config.json keeps the options as given; task.json has them resolved
            given = _read_json(self.out / "config.json").get("task_options", given)
        else:
            (self.out / TASK_FILE).write_text(json.dumps(
                {"task": cfg.task, "options": _json_options(self.env.task.options)}, indent=2))
        (self.out / "config.json").write_text(json.dumps({**cfg.to_dict(), "task_options": given}, indent=2))
        self._write_csv()
        self._tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
            import tensorboard  # noqa: F401

            self._tb = SummaryWriter(str(self.out))
        except Exception:
            self._tb = None

    # -- files ------------------------------------------------------------------------------
    def _note(self, msg: str) -> None:
        """A timestamped line in log.txt only (run start and end)."""
        with open(self.out / "log.txt", "a") as f:
            f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + msg + "\n")

    def log(self, msg: str) -> None:
        with open(self.out / "log.txt", "a") as f:
            f.write(msg + "\n")
        if self.progress:
            from tqdm import tqdm

            tqdm.write(msg)

    def _write_csv(self) -> None:
        tmp = self.out / "metrics.csv.tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self.columns)
            for r in self.rows:
                w.writerow([_fmt(r.get(c, float("nan"))) for c in self.columns])
        os.replace(tmp, self.out / "metrics.csv")

    def _append_csv(self, row: dict) -> None:
        with open(self.out / "metrics.csv", "a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(c, float("nan"))) for c in self.columns])

    def save_checkpoint(self) -> None:
        atomic_save({"format": 1, "config": self.cfg.to_dict(), "agent": self.agent.state_dict(),
                     "rows": self.rows, "wall_time": self.wall}, self.out / "checkpoint.pt")

    def save_policy(self) -> None:
        a = self.agent
        if hasattr(a, "policy_payload"):  # ppo/sac (learner/sb3.py)
            atomic_save({"format": 1, "config": self.cfg.to_dict(), **a.policy_payload()}, self.out / "policy.pt")
            return
        atomic_save({"format": 1, "config": self.cfg.to_dict(), "actor": a.actor.state_dict(),
                     "obs_norm": a.obs_norm.state_dict(), "obs_dim": self.env.obs_dim,
                     "act_dim": self.env.act_dim, "iteration": a.iteration}, self.out / "policy.pt")

    # -- loop -------------------------------------------------------------------------------
    def train(self, stop_after: int | None = None) -> list[dict]:
        cfg, agent = self.cfg, self.agent
        interrupted = {"flag": False}

        def on_sigint(signum, frame):
            if interrupted["flag"]:
                raise KeyboardInterrupt
            interrupted["flag"] = True
            self.log("interrupt: finishing this iteration, then saving a checkpoint (Ctrl-C again to abort)")

        old = None
        try:
            old = signal.signal(signal.SIGINT, on_sigint)
        except ValueError:  # not in the main thread
            old = None
        self._note(f"{'resume at iteration ' + str(agent.iteration) if agent.iteration else 'start'}: "
                   f"task {cfg.task}, algo {cfg.algo}, seed {cfg.seed}, {cfg.num_envs} envs, "
                   f"{cfg.iterations} iterations, task options {json.dumps(cfg.task_options)}; "
                   f"code: {code_version()}")
        bar = None
        # no terminal (a log file, CI, nohup): a plain line every ~10 s instead of a progress bar
        plain = self.progress and not sys.stderr.isatty()
        last_line = -math.inf
        if self.progress and not plain:
            from tqdm import tqdm

            bar = tqdm(total=cfg.iterations, initial=agent.iteration, desc=f"{cfg.algo} {cfg.task}",
                       dynamic_ncols=True)
        done_now = 0
        try:
            while agent.iteration < cfg.iterations:
                if stop_after is not None and done_now >= stop_after:
                    break
                t0 = time.perf_counter()
                steps0 = agent.env_steps
                out = agent.iterate()
                dt = time.perf_counter() - t0
                self.wall += dt
                row = {"iteration": agent.iteration, "env_steps": agent.env_steps, "wall_time": self.wall,
                       "steps_per_s": (agent.env_steps - steps0) / max(dt, 1e-9), **out}
                self.rows.append(row)
                self._append_csv(row)
                if self._tb is not None:
                    for k, v in row.items():
                        if k != "env_steps" and isinstance(v, (int, float)) and math.isfinite(v):
                            self._tb.add_scalar(k, v, agent.env_steps)
                done_now += 1
                if bar is not None:
                    bar.update(1)
                    post = {"ret": row["return"], "score": row["score"], "actor": row.get("actor_loss"),
                            "critic": row.get("critic_loss"), "steps/s": row["steps_per_s"]}
                    if "model_loss" in row:
                        post["model"] = row["model_loss"]
                    bar.set_postfix({k: f"{v:.3g}" for k, v in post.items()
                                     if isinstance(v, float) and math.isfinite(v)})
                if plain and (time.monotonic() - last_line >= PLAIN_PROGRESS_SECONDS
                              or agent.iteration >= cfg.iterations or done_now == 1):
                    last_line = time.monotonic()
                    print(f"{cfg.algo} {cfg.task}: iteration {agent.iteration}/{cfg.iterations}, env steps "
                          f"{agent.env_steps}, {describe(row)}, {self.wall:.0f} s, "
                          f"{row['steps_per_s']:.0f} steps/s", flush=True)
                if interrupted["flag"]:
                    break
                if cfg.checkpoint_every > 0 and agent.iteration % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()
            if old is not None:
                signal.signal(signal.SIGINT, old)
        self.save_checkpoint()
        if agent.iteration >= cfg.iterations:
            self.save_policy()
        if self._tb is not None:
            self._tb.flush()
        if interrupted["flag"]:
            self.log(f"saved checkpoint at iteration {agent.iteration}; continue with --resume")
        last = self.rows[-1] if self.rows else {}
        self._note(f"end: iteration {agent.iteration}/{cfg.iterations}, env steps {agent.env_steps}, "
                   f"{self.wall:.1f} s, {describe(last)}; wrote checkpoint.pt"
                   + (", policy.pt" if agent.iteration >= cfg.iterations else " (unfinished: --resume continues)"))
        return self.rows


# -- run-directory readers ----------------------------------------------------------------------
def read_config(run_dir) -> Config:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run directory {str(run_dir)!r} does not exist")
    path = run_dir / "config.json"
    if not path.is_file():
        raise RunError(f"{str(run_dir)!r} is not a run directory (no config.json)")
    try:
        data = json.loads(path.read_text())
    except Exception as exc:
        raise RunError(f"corrupt config.json in {run_dir}: {exc}") from exc
    if not isinstance(data, dict) or not data.get("task"):
        raise RunError(f"corrupt config.json in {run_dir}: no task")
    cfg = from_dict(data)
    task_file = run_dir / TASK_FILE
    if task_file.is_file():  # the options the run resolved (runs made before task.json existed have none)
        saved = _read_json(task_file)
        if saved.get("task") != cfg.task or not isinstance(saved.get("options"), dict):
            raise RunError(f"corrupt {TASK_FILE} in {run_dir}: it does not hold the options of task {cfg.task!r}")
        cfg.task_options = dict(saved["options"])
    return cfg


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except Exception as exc:
        raise RunError(f"corrupt {path.name} in {path.parent}: {exc}") from exc
    if not isinstance(data, dict):
        raise RunError(f"corrupt {path.name} in {path.parent}: not a JSON object")
    return data


def code_version() -> str:
    """The code a run ran on, for its log: the package version, the git commit of the checkout
    it was imported from (when it is one; "+ uncommitted changes" when they are), torch and
    Taichi. A seed fixes a run only together with this: rounding-level changes of the code change
    a training path (docs/locomotion.md, Fig. 4 on cheetah)."""
    import subprocess

    import taichi

    from .. import __version__

    root = Path(__file__).resolve().parents[2]
    commit = "not a git checkout"
    try:
        git = dict(cwd=root, capture_output=True, text=True, timeout=10)
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], **git)
        if head.returncode == 0 and (root / ".git").exists():
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **git)
            commit = "commit " + head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    tv = taichi.__version__
    tv = ".".join(map(str, tv)) if isinstance(tv, tuple) else str(tv)
    return f"mbmix-taichi {__version__} ({commit}), torch {torch.__version__}, taichi {tv}"


def _json_options(options: dict) -> dict:
    """A task's resolved options as JSON values (paths as strings)."""
    return json.loads(json.dumps(options, default=str))


_LOCKS: dict = {}  # run directory -> this process's open, locked .lock file


def lock_run_dir(out: Path):
    """Take `out/.lock`, an exclusive fcntl.flock held until this process ends (or `unlock_run_dir`);
    RunError at once if another process holds it. Runs of one process share its lock."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    key = str(out.resolve())
    if key in _LOCKS:
        return _LOCKS[key]
    f = open(out / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise RunError(f"run directory {str(out)!r} is in use by a training process ({holder}); wait for it to "
                       "finish or train into another --out") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}\n")
    f.flush()
    _LOCKS[key] = f
    return f


def refuse_if_in_use(out: Path) -> None:
    """RunError if another process holds out/.lock (probes the lock without keeping it)."""
    import fcntl

    if not (out / ".lock").is_file() or str(out.resolve()) in _LOCKS:  # absent, or ours
        return
    with open(out / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RunError(f"run directory {str(out)!r} is in use by a training process ({holder}); wait for "
                           "it to finish or train into another --out") from None
        fcntl.flock(f, fcntl.LOCK_UN)


def unlock_run_dir(out) -> None:
    f = _LOCKS.pop(str(Path(out).resolve()), None)
    if f is not None:
        f.close()


def _load(path: Path) -> dict:
    # weights_only: a run directory is data, not code; a pickle that would import or call anything
    # beyond tensors and plain containers is refused, never executed
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        glob = re.search(r"GLOBAL (\S+)", msg)
        if glob or "global" in msg.lower():
            what = glob.group(1)[:120] if glob else "a Python global"
            raise RunError(f"refusing to load {path.name} in {path.parent}: it asks to import or call Python code "
                           f"({what}); run directories are data, not code, and only plain tensors and containers "
                           "are loaded") from None
        raise RunError(f"corrupt or unreadable {path.name} in {path.parent}: not a tensor file "
                       f"({msg.strip().splitlines()[-3][:160] if len(msg.splitlines()) > 3 else 'unreadable'})") from None
    except Exception as exc:
        raise RunError(f"corrupt or unreadable {path.name} in {path.parent}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(obj, dict) or obj.get("format") != 1:
        raise RunError(f"{path} is not an mbmix-taichi file")
    return obj


def load_checkpoint(run_dir) -> dict:
    path = Path(run_dir) / "checkpoint.pt"
    if not path.is_file():
        raise RunError(f"no checkpoint.pt in {str(run_dir)!r}")
    return _load(path)


def _policy_fn(actor, obs_norm):
    actor.eval()

    def policy_fn(obs: torch.Tensor) -> torch.Tensor:  # the networks are on the CPU; the actions go where obs is
        with torch.no_grad():
            return actor(obs_norm(obs.detach().cpu().float()), deterministic=True).to(obs.device)

    return policy_fn


class _Dims:
    def __init__(self, obs_dim, act_dim):
        self.obs_dim, self.act_dim = obs_dim, act_dim


def load_policy(run_dir):
    """(task_name, task_options, policy_fn) of a run's final policy (policy.pt, or the latest
    checkpoint when the run has not finished). policy_fn(obs [N, obs_dim]) -> actions [N, act_dim]."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    if cfg.algo in SB3_ALGOS:
        return _load_sb3_policy(run_dir, cfg)
    if (run_dir / "policy.pt").is_file():
        d = _load(run_dir / "policy.pt")
        actor_sd, norm_sd, dims = d["actor"], d["obs_norm"], (d["obs_dim"], d["act_dim"])
    else:
        d = load_checkpoint(run_dir)["agent"]
        actor_sd, norm_sd = d["actor"], d["obs_norm"]
        dims = (norm_sd["mean"].shape[0], actor_sd["log_std"].shape[0])
    try:
        nets = build_networks(cfg, _Dims(*dims))
        nets["actor"].load_state_dict(actor_sd)
        nets["obs_norm"].load_state_dict(norm_sd)
    except Exception as exc:
        raise RunError(f"policy in {run_dir} does not match its config.json: {exc}") from exc
    return cfg.task, dict(cfg.task_options), _policy_fn(nets["actor"], nets["obs_norm"])


def _load_sb3_policy(run_dir: Path, cfg: Config):
    from . import sb3

    if (run_dir / "policy.pt").is_file():
        d = _load(run_dir / "policy.pt")
    else:
        d = load_checkpoint(run_dir)["agent"]
    try:
        policy = sb3.build_policy(cfg, int(d["obs_dim"]), int(d["act_dim"]), d["sb3_policy"])
    except RunError:
        raise
    except Exception as exc:
        raise RunError(f"policy in {run_dir} does not match its config.json: {exc}") from exc
    return cfg.task, dict(cfg.task_options), sb3.policy_fn(cfg, policy, d.get("obs_rms"))


def untrained_policy(run_dir):
    """The initial (untrained) policy of the run's seed, same format as `load_policy`."""
    cfg = read_config(run_dir)
    if cfg.algo in SB3_ALGOS:
        from . import sb3

        env = make_env(cfg, num_envs=1)
        policy = sb3.build_policy(cfg, env.obs_dim, env.act_dim)
        return cfg.task, dict(cfg.task_options), sb3.policy_fn(cfg, policy, sb3.untrained_obs_rms(cfg, env.obs_dim))
    env = make_env(cfg, num_envs=1)
    nets = build_networks(cfg, env)
    return cfg.task, dict(cfg.task_options), _policy_fn(nets["actor"], nets["obs_norm"])


def evaluate(task: str, task_options: dict, policy_fn, episodes: int = 8, seed: int = 12345) -> dict:
    """Mean return and final task score over `episodes` episodes (one per parallel env)."""
    import mbmix_taichi as mt

    env = mt.make(task, num_envs=episodes, seed=seed, **task_options)
    obs = env.reset(seed)
    ret = torch.zeros(episodes)
    finished = torch.zeros(episodes, dtype=torch.bool)
    score = torch.full((episodes,), float("nan"))
    for _ in range(env.episode_length):
        with torch.no_grad():
            action = policy_fn(obs)
            obs, reward, term, trunc, info = env.step(action.to(env.dtype))
        ret += torch.where(finished, torch.zeros_like(ret), reward.float().cpu())
        ended = info["done"].cpu()  # (the env's tensors may live on a GPU; these tallies are on the CPU)
        done = ended & ~finished
        if "score" in info:
            score[done] = info["score"].float().cpu()[done]
        finished |= ended
        if finished.all():
            break
    out = {"return": float(ret.mean()), "return_std": float(ret.std()) if episodes > 1 else 0.0}
    if not torch.isnan(score).all():
        out["score"] = float(score.nanmean())
        out["score_std"] = float(score[~torch.isnan(score)].std()) if episodes > 1 else 0.0
    return out
