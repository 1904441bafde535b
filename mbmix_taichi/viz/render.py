"""Rendering a rollout: what to roll out (a task name, a run directory's trained policy, or a Task
instance), the rollout itself, and drawing its frames into a Scene and a FrameWriter."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from ..errors import OptionError, RenderError, UnknownTaskError
from .scene import Scene, _to_numpy, has_display
from .video import FrameWriter, output_kind


# -- what to roll out ---------------------------------------------------------------------
def is_run_dir(target) -> bool:
    p = Path(str(target))
    return p.is_dir() and (p / "config.json").is_file()


def load_target(target, task_options=None):
    """(task name, task options, trained policy_fn or None) for a task name or a run directory.

    A :class:`~mbmix_taichi.task.Task` instance (a task of your own, not registered) is
    returned as is in place of the name."""
    from ..task import Task

    task_options = dict(task_options or {})
    if isinstance(target, Task):
        if task_options:
            raise OptionError("task options go to the Task's constructor when you pass a Task instance")
        return target, {}, None
    p = Path(str(target))
    if is_run_dir(p):
        try:
            from ..learner import load_policy
        except ImportError as exc:
            raise RenderError(f"{target!r} is a run directory, but this install has no learner "
                              f"(mbmix_taichi.learner.load_policy): {exc}") from exc
        task, opts, policy_fn = load_policy(str(p))
        return task, {**(opts or {}), **task_options}, policy_fn
    import mbmix_taichi as mt

    if str(target) in mt.list_tasks():
        return str(target), task_options, None
    if p.exists() or os.sep in str(target) or str(target).startswith("."):
        if p.is_dir():
            raise RenderError(f"{str(target)!r} is a folder without config.json, so not a run directory")
        raise RenderError(f"run directory {str(target)!r} does not exist")
    raise UnknownTaskError(f"{str(target)!r} is neither a task nor a run directory; tasks: "
                           f"{', '.join(mt.list_tasks())}")


def make_policy(kind: str, act_dim: int, seed: int):
    import torch

    if kind == "zero":
        return lambda obs: torch.zeros(obs.shape[0], act_dim, dtype=obs.dtype, device=obs.device)
    if kind == "random":
        gen = torch.Generator().manual_seed(int(seed) + 7919)
        return lambda obs: (torch.rand(obs.shape[0], act_dim, generator=gen, dtype=torch.float64) * 2 - 1).to(
            dtype=obs.dtype, device=obs.device)
    raise OptionError(f"policy must be 'random' or 'zero', got {kind!r}")


def rollout(env, policy_fn, episodes: int = 1, steps: int | None = None, seed: int = 0):
    """Yield (state_row, info dict) for every frame: each episode's first state, then the
    state after every step (the pre-reset state at an episode's end). Episode k starts
    from ``env.reset(seed + k)``."""
    import torch

    steps = env.episode_length if steps is None else int(steps)
    for ep in range(episodes):
        obs = env.reset(seed=int(seed) + ep)
        ret, score = 0.0, None
        last = _to_numpy(env.get_state()[0])
        yield last, {"episode": ep, "step": 0, "return": ret, "score": score}
        for t in range(steps):
            with torch.no_grad():
                action = policy_fn(obs)
            action = torch.as_tensor(action).to(dtype=env.dtype, device=env.device).reshape(env.num_envs, env.act_dim)
            obs, reward, terminated, truncated, info = env.step(action.clamp(-1.0, 1.0))
            ret += float(reward[0])
            if "score" in info:
                score = float(_to_numpy(info["score"]).reshape(-1)[0])
            state = info.get("final_state", None)
            state = _to_numpy((env.get_state() if state is None else state)[0])
            done = bool(terminated[0] or truncated[0])
            frame_info = {"episode": ep, "step": t + 1, "return": ret, "score": score, "done": done}
            blowup = info.get("blowup", None)
            if (blowup is not None and bool(blowup[0])) or not np.isfinite(state).all():
                state = last  # draw the last good state, and say why the episode ended
                frame_info["note"] = "simulator blow-up: episode ended"
            last = state
            yield state, frame_info
            if done:
                break


def overlay_text(task: str, info: dict, episodes: int, steps: int) -> str:
    score = "-" if info.get("score") is None else f"{info['score']:.3f}"
    return (f"{task}  episode {info['episode'] + 1}/{episodes}  step {info['step']}/{steps}\n"
            f"return {info['return']:.3f}  score {score}" + (f"\n{info['note']}" if info.get("note") else ""))


def render(target, out=None, episodes: int = 1, seed: int = 0, steps: int | None = None, width: int = 640,
           height: int = 480, fps: float = 20, policy: str | None = None, overlay: bool = True,
           interactive: bool = False, task_options: dict | None = None, progress: bool = False) -> dict:
    """Roll out a task (random/zero policy) or a run directory (its trained policy) and draw it.

    ``target``: a task name, a run directory, or a Task instance. ``policy``: "random",
    "zero", a callable ``policy_fn(obs) -> actions``, or None (the run's trained policy for a
    run directory, else random). ``out``: .mp4, .gif, .png
    (frames tiled into one picture) or a folder of PNG frames. Each episode gives
    ``steps + 1`` frames (its first state, then one per step) unless it ends earlier.

    Returns {"out": path, "frames": n, "task": name, "returns": [...], "scores": [...]}.
    """
    import mbmix_taichi as mt

    if episodes < 1:
        raise OptionError(f"episodes must be at least 1, got {episodes}")
    if steps is not None and steps < 0:
        raise OptionError(f"steps must be >= 0, got {steps}")
    if width < 16 or height < 16:
        raise OptionError(f"width and height must be at least 16 pixels, got {width}x{height}")
    if fps <= 0:
        raise OptionError(f"fps must be positive, got {fps}")
    if out is None and not interactive:
        raise RenderError("give --out FILE (.mp4, .gif, .png or a folder/) or --interactive")
    if interactive and not has_display():
        raise RenderError("--interactive needs a display (DISPLAY/WAYLAND_DISPLAY is not set); "
                          "render to a file with --out instead")
    kind = output_kind(out) if out is not None else None  # fail on a bad extension before simulating
    task, opts, trained = load_target(target, task_options)
    if isinstance(task, mt.Task):
        env = mt.Env(task, num_envs=1, seed=seed)
        task = task.name or type(task).__name__
    else:
        env = mt.make(task, num_envs=1, seed=seed, **opts)
    if callable(policy):  # Python API: your own policy_fn(obs [1, obs_dim]) -> actions [1, act_dim]
        policy_fn = policy
    elif trained is not None and policy is None:
        policy_fn = trained
    else:
        policy_fn = make_policy(policy or "random", env.act_dim, seed)
    spec = env.task.render_spec() or {}
    if not any(k in spec for k in ("meshes", "spheres", "geoms")):
        raise RenderError(f"task {task!r} has nothing to draw (its render_spec() has no meshes, spheres or geoms)")
    n_steps = env.episode_length if steps is None else int(steps)
    writer = FrameWriter(out, fps, width, height) if kind is not None else None
    scene = None
    returns, scores = [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=episodes * (n_steps + 1), desc=f"render {task}", unit="frame", file=sys.stderr)
    try:
        last = None
        for state, info in rollout(env, policy_fn, episodes, n_steps, seed):
            if scene is None:
                scene = Scene(spec, state, width, height, overlay=overlay, off_screen=not interactive)
                if interactive:
                    scene.plotter.show(interactive_update=True, auto_close=False)
            elif info["step"] == 0:
                scene.new_episode(state)
            if last is not None and info["step"] == 0:
                returns.append(last["return"])
                scores.append(last["score"])
            scene.update(state, overlay_text(task, info, episodes, n_steps) if overlay else None)
            if interactive:
                scene.plotter.update()
                import time

                time.sleep(1.0 / fps)
            if writer is not None:
                writer.append(scene.frame())
            last = info
            if bar is not None:
                bar.update(1)
        if last is not None:
            returns.append(last["return"])
            scores.append(last["score"])
        if interactive and scene is not None:
            scene.plotter.show()  # keep the window until the user closes it
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        if scene is not None:
            scene.close()
    return {"out": None if writer is None else str(writer.path), "frames": 0 if writer is None else writer.count,
            "task": task, "returns": returns, "scores": scores}


__all__ = ["render", "rollout", "load_target", "make_policy", "is_run_dir"]
