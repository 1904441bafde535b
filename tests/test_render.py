"""Headless rendering: real pixels, frame counts and sizes, outputs, errors, the CLI.

A tiny torch-only fake task (not registered) exercises every render-spec key (mesh,
spheres, rigid geoms, following camera, ground); the real cloth tasks and one rigid task
(when one is registered) are rendered at small sizes.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import mbmix_taichi as mt
from mbmix_taichi.cli.options import parse_task_options
from mbmix_taichi.errors import MbmixError, OptionError, RenderError
from mbmix_taichi.physics.base import Simulator
from mbmix_taichi.viz.render import render
from mbmix_taichi.viz.scene import Scene
from mbmix_taichi.viz.video import FrameWriter, output_kind, tile_frames

import imageio.v3 as imageio

W, H = 160, 120
GREEN, MAGENTA = "#22b022", "#c020c0"
N = 5  # fake cloth: N x N grid


def _grid_faces(n):
    f = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            f += [(a, d, b), (a, c, d)]  # counter-clockwise seen from +z
    return np.array(f)


class _FakeSim(Simulator):
    """state = [grid vertices (3N^2), 2 pickers (6), robot base (3)]; the control moves the
    pickers, lifts the cloth's +x edge and drives the robot along +x."""

    def __init__(self, dtype, device):
        self.dtype, self.device = dtype, device
        self.state_dim = 3 * N * N + 6 + 3
        self.control_dim = 2

    def step(self, state, control, record=False):
        nxt = state.clone()
        v = nxt[:, : 3 * N * N].reshape(-1, N, N, 3)
        lift = 0.02 + 0.02 * control[:, :1].abs()
        v[:, :, -1, 2] += lift  # the +x column rises
        nxt[:, 3 * N * N: 3 * N * N + 6].reshape(-1, 2, 3)[:, :, 2] += lift
        nxt[:, -3] += 0.05 * (1.0 + control[:, 1])
        return nxt, ((state, control) if record else None)

    # derivatives by torch.func (every Simulator provides them; rendering never calls them)
    def vjp_tape(self, tape, cotangent):
        return torch.func.vjp(lambda s, c: self.step(s, c)[0], *tape)[1](cotangent)

    def jvp(self, state, control, t_state, t_control):
        return torch.func.jvp(lambda s, c: self.step(s, c)[0], (state, control), (t_state, t_control))[1]


class _FakeTask(mt.Task):
    # no `name`: not registered, so other tests never see it
    description = "render test fixture"

    def build(self, dtype, device):
        self.episode_length, self.act_dim, self.obs_dim = 6, 2, 3 * N * N + 9
        return _FakeSim(dtype, device)

    def reset(self, generator, num_envs):
        xs = np.linspace(-0.15, 0.15, N)
        gx, gy = np.meshgrid(xs, xs, indexing="ij")
        verts = np.stack([gx, gy, np.zeros_like(gx)], -1).reshape(-1)
        pickers = np.array([0.15, -0.15, 0.0, 0.15, 0.15, 0.0])
        s = np.concatenate([verts, pickers, [0.0, 0.35, 0.1]])
        return torch.tensor(s)[None].repeat(num_envs, 1)

    def observe(self, state):
        return state

    def reward(self, state, action, next_state):
        return -next_state[:, -3]

    def metrics(self, state):
        return {"score": torch.exp(-state[:, -3].abs())}

    def render_spec(self):
        faces = _grid_faces(N)
        return {
            "meshes": [{"vertices": lambda s: s[: 3 * N * N].reshape(-1, 3), "faces": faces, "color": GREEN,
                        "back_color": "#e0a020"}],
            "spheres": [{"centers": lambda s: s[3 * N * N: 3 * N * N + 6].reshape(2, 3), "radius": 0.02,
                         "color": "#ff0000"}],
            "geoms": lambda s: [
                {"type": "box", "pos": s[-3:], "rot": np.eye(3), "size": [0.05, 0.05, 0.05], "color": MAGENTA},
                {"type": "capsule", "pos": s[-3:] + [0, 0, 0.12], "rot": np.eye(3), "size": [0.02, 0.05],
                 "color": MAGENTA},
                {"type": "sphere", "pos": s[-3:] + [0.1, 0, 0], "rot": np.eye(3), "size": [0.03], "color": MAGENTA},
            ],
            "camera": {"position": [0.0, -0.9, 0.6], "focal_point": [0.0, 0.1, 0.0], "up": [0, 0, 1]},
            "ground": {"height": 0.0, "size": 2.0},
        }


def _mask(img, color):
    """Pixels whose colour is dominated like `color`'s (shading only scales brightness)."""
    img = img.astype(int)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    if color == "green":
        return (g > r + 40) & (g > b + 40)
    if color == "red":
        return (r > g + 80) & (r > b + 80)
    if color == "magenta":
        return (r > g + 50) & (b > g + 50)
    if color == "blue":
        return (b > r + 50) & (b > g + 20)
    if color == "orange":
        return (r > b + 80) & (g > b + 30)
    raise ValueError(color)


def _not_blank(img):
    assert img.ndim == 3 and img.shape[2] == 3
    assert img.std() > 10, "frame is (nearly) one colour"
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50


@pytest.fixture(scope="module")
def fake_states():
    env = mt.Env(_FakeTask(), num_envs=1, seed=0)
    s0 = env.get_state()[0].numpy()
    env.step(torch.ones(1, 2))
    env.step(torch.ones(1, 2))
    return env, s0, env.get_state()[0].numpy()


def test_scene_draws_every_kind_of_object(fake_states):
    env, s0, s2 = fake_states
    scene = Scene(env.task.render_spec(), s0, W, H, overlay=False)
    try:
        a = scene.frame()
        assert a.shape == (H, W, 3) and a.dtype == np.uint8
        _not_blank(a)
        assert _mask(a, "green").sum() > 300, "cloth mesh not visible"
        assert _mask(a, "red").sum() > 15, "picker spheres not visible"
        assert _mask(a, "magenta").sum() > 100, "rigid geoms not visible"
        plotter = scene.plotter
        scene.update(s2)
        b = scene.frame()
        assert scene.plotter is plotter  # one plotter for all frames
        assert (np.abs(a.astype(int) - b.astype(int)).sum(-1) > 30).sum() > 200, "frames do not change"
        # the geoms moved +x: their pixels' mean column moved right
        ca = np.nonzero(_mask(a, "magenta"))[1].mean()
        cb = np.nonzero(_mask(b, "magenta"))[1].mean()
        assert cb > ca + 3
    finally:
        scene.close()


def test_back_of_mesh_has_its_own_colour(fake_states):
    env, s0, _ = fake_states
    spec = env.task.render_spec()
    faces = spec["meshes"][0]["faces"]
    spec = {"meshes": [{**spec["meshes"][0], "faces": faces[:, ::-1].copy()}], "camera": spec["camera"]}
    scene = Scene(spec, s0, W, H, overlay=False)  # winding reversed: the camera sees the underside
    try:
        img = scene.frame()
        assert _mask(img, "orange").sum() > 300 and _mask(img, "green").sum() < 20
    finally:
        scene.close()


def test_follow_camera_keeps_robot_in_view(fake_states):
    env, s0, _ = fake_states
    spec = env.task.render_spec()
    spec = {"geoms": spec["geoms"], "ground": spec["ground"],
            "camera": {**spec["camera"], "follow": lambda s: s[-3:]}}
    scene = Scene(spec, s0, W, H, overlay=False)
    try:
        a = scene.frame()
        far = s0.copy()
        far[-3] += 5.0  # the robot ran 5 m away; the camera came along
        scene.update(far)
        b = scene.frame()
        ma, mb = _mask(a, "magenta"), _mask(b, "magenta")
        assert mb.sum() > 0.8 * ma.sum() > 50
        assert abs(np.nonzero(ma)[1].mean() - np.nonzero(mb)[1].mean()) < 3
        _not_blank(b)  # the ground grid came along too
    finally:
        scene.close()


def test_render_gif_frames_size_and_change(tmp_path):
    out = tmp_path / "fake.gif"
    res = render(_FakeTask(), out, steps=4, width=W, height=H, fps=10)
    assert res["frames"] == 5 and len(res["returns"]) == 1 and res["scores"][0] is not None
    frames = imageio.imread(out)
    assert frames.shape == (5, H, W, 3)
    for f in frames:
        _not_blank(f)
    diffs = [np.abs(frames[i + 1].astype(int) - frames[i].astype(int)).mean() for i in range(4)]
    assert min(diffs) > 0.05
    assert imageio.immeta(out)["duration"] == 100


def test_render_mp4_png_folder_and_sheet(tmp_path):
    mp4 = tmp_path / "v.mp4"
    render(_FakeTask(), mp4, episodes=2, steps=2, width=W, height=H, policy="zero")
    frames = imageio.imread(mp4)
    assert frames.shape == (6, H, W, 3)  # 2 episodes x (2 steps + 1)
    _not_blank(frames[0])
    folder = tmp_path / "frames"
    res = render(_FakeTask(), f"{folder}/", steps=3, width=W, height=H, overlay=False)
    pngs = sorted(folder.glob("frame_*.png"))
    assert res["frames"] == 4 and len(pngs) == 4
    assert imageio.imread(pngs[0]).shape[:2] == (H, W)
    sheet = tmp_path / "sheet.png"
    render(_FakeTask(), sheet, steps=6, width=W, height=H)
    assert imageio.imread(sheet).shape[:2] == (H, 5 * W + 4 * 4)


def test_overlay_draws_text(fake_states):
    env, s0, _ = fake_states
    spec = env.task.render_spec()
    with_text = Scene(spec, s0, W, H, overlay=True)
    plain = Scene(spec, s0, W, H, overlay=False)
    try:
        with_text.update(s0, "task  step 3/6\nreturn -1.000  score 0.5")
        a, b = with_text.frame(), plain.frame()
        top = (np.abs(a.astype(int) - b.astype(int)).sum(-1) > 60)[: H // 4]
        assert top.sum() > 30
    finally:
        with_text.close()
        plain.close()


def test_outputs_and_options_errors(tmp_path, monkeypatch):
    assert output_kind("a.MP4") == "mp4" and output_kind("a.gif") == "gif" and output_kind("out/") == "dir"
    assert output_kind(tmp_path / "frames") == "dir" and output_kind("s.png") == "png"
    with pytest.raises(RenderError, match="unknown extension"):
        output_kind("a.jpg")
    with pytest.raises(RenderError, match="even"):
        FrameWriter(tmp_path / "a.mp4", 20, 161, 120)
    with pytest.raises(MbmixError, match="does not exist"):
        render(str(tmp_path / "no_such_run"), tmp_path / "x.gif")
    with pytest.raises(MbmixError, match="not a run directory"):
        render(str(tmp_path), tmp_path / "x.gif")
    with pytest.raises(MbmixError, match="neither a task nor a run directory"):
        render("no-such-task", tmp_path / "x.gif")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(RenderError, match="needs a display"):
        render(_FakeTask(), None, interactive=True)
    with pytest.raises(RenderError, match="--out"):
        render(_FakeTask(), None)
    assert parse_task_options(["mesh=tshirt", "resolution=6", "dt=0.02", "flag=true", "x=none"]) == {
        "mesh": "tshirt", "resolution": 6, "dt": 0.02, "flag": True, "x": None}
    with pytest.raises(OptionError):
        parse_task_options(["novalue"])
    sheet = tile_frames([np.zeros((4, 6, 3), np.uint8)] * 2)
    assert sheet.shape == (4, 16, 3)


# -- real tasks ---------------------------------------------------------------------------

CLOTH = {"resolution": 8}


def test_cloth_fold_renders_cloth_and_pickers(tmp_path):
    out = tmp_path / "fold.gif"
    res = render("cloth-fold", out, steps=4, width=W, height=H, seed=1, task_options=CLOTH)
    frames = imageio.imread(out)
    assert res["frames"] == 5 and frames.shape == (5, H, W, 3)
    for f in frames:
        _not_blank(f)
        assert _mask(f, "blue").sum() > 0.05 * W * H, "too few cloth pixels"
        assert _mask(f, "red").sum() > 5, "pickers not visible"
    assert np.abs(frames[-1].astype(int) - frames[0].astype(int)).sum(-1).astype(bool).sum() > 100


def test_tshirt_mesh_renders(tmp_path):
    out = tmp_path / "tshirt.png"
    render("cloth-fold", out, steps=0, width=W, height=H, task_options={"mesh": "tshirt"})
    img = imageio.imread(out)
    assert img.shape == (H, W, 3)
    assert _mask(img, "blue").sum() > 0.04 * W * H


def _rigid_task():
    tasks = mt.list_tasks()
    if "cartpole-swingup" in tasks:  # the cheapest to compile
        return "cartpole-swingup"
    return next((t for t in tasks if not t.startswith("cloth") and t != "mjcf"), None)


def test_rigid_task_renders(tmp_path):
    task = _rigid_task()
    out = tmp_path / "rigid.gif"
    res = render(task, out, steps=3, width=W, height=H, seed=0)
    frames = imageio.imread(out)
    assert frames.shape[1:] == (H, W, 3) and res["frames"] == len(frames) >= 2
    _not_blank(frames[0])
    f = frames[0].astype(int)
    saturated = (f.max(-1) - f.min(-1)) > 60  # background and ground are grey/beige; geoms are coloured
    assert saturated.sum() > 50, "robot geoms not visible"
    assert np.abs(frames[-1].astype(int) - frames[0].astype(int)).sum() > 0


def test_run_dir_uses_its_trained_policy(tmp_path, monkeypatch):
    import mbmix_taichi.learner as learner

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"task": "cloth-fold", "task_options": CLOTH, "algo": "mbmix",
                                                 "seed": 0}))
    calls = []
    act_dim = mt.make("cloth-fold", **CLOTH).act_dim

    def policy_fn(obs):
        calls.append(obs.shape)
        return torch.zeros(obs.shape[0], act_dim, dtype=obs.dtype)

    real = getattr(learner, "load_policy", None)
    monkeypatch.setattr(learner, "load_policy", lambda d: ("cloth-fold", dict(CLOTH), policy_fn), raising=False)
    res = render(str(run), tmp_path / "run.gif", steps=2, width=W, height=H)
    assert res["task"] == "cloth-fold" and res["frames"] == 3 and len(calls) == 2
    if real is not None:
        monkeypatch.setattr(learner, "load_policy", real)


def test_cli_render(tmp_path):
    from mbmix_taichi.cli import main

    out = tmp_path / "cli.gif"
    r = CliRunner().invoke(main, ["render", "cloth-fold", "--out", str(out), "--steps", "2", "--width", "96",
                                  "--height", "64", "--task-option", "resolution=6", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert "wrote 3 frames" in r.output
    assert imageio.imread(out).shape == (3, 64, 96, 3)
    r = CliRunner().invoke(main, ["render", "cloth-fold", "--out", str(tmp_path / "x.jpg")])
    assert r.exit_code == 2 and "unknown extension" in r.output and "Traceback" not in r.output


def test_tshirt_asset():
    import importlib.resources

    import trimesh

    path = importlib.resources.files("mbmix_taichi.assets") / "tshirt.obj"
    mesh = trimesh.load(str(path), process=False, force="mesh")
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    assert 150 <= len(v) <= 400 and len(f) > len(v)
    assert np.allclose(v[:, 2], 0.0)
    assert abs(np.ptp(v[:, 0]) - 0.3) < 0.01
    assert np.allclose(0.5 * (v.min(0) + v.max(0)), 0.0, atol=1e-6)
    assert (mesh.face_normals[:, 2] > 0.99).all()  # wound counter-clockwise, normals +z
    # one piece with one boundary (a disc): V - E + F = 1
    edges = np.unique(np.sort(mesh.edges, axis=1), axis=0)
    assert len(v) - len(edges) + len(f) == 1
    assert len(mesh.split(only_watertight=False)) == 1
    # not a rectangle: the outline's area is well below its bounding box's
    assert mesh.area < 0.8 * np.ptp(v[:, 0]) * np.ptp(v[:, 1])
    lengths = np.linalg.norm(v[mesh.edges[:, 0]] - v[mesh.edges[:, 1]], axis=1)
    assert lengths.max() < 3 * lengths.min()  # fairly uniform triangles
