"""Bad input, faults and untrusted files (issue 13): every case is a clear MbmixError (no raw
traceback), nothing is accepted silently, nothing hangs, nothing from a run directory runs."""
import math
import multiprocessing as mp
import os

import numpy as np
import pytest
import torch

import mbmix_taichi as mt
from mbmix_taichi.registry import get_task_class, list_tasks

OPTS = dict(resolution=4, substeps=4, episode_length=5)


@pytest.fixture(scope="module")
def env():
    return mt.make("cloth-fold", num_envs=3, seed=0, **OPTS)


def _usable(env):
    """The env still steps after an error."""
    env.step(torch.zeros(env.num_envs, env.act_dim))


# ---------------------------------------------------------------------------------- env API
def test_jvp_probe_counts_must_agree(env):
    s, a = env.get_state(), torch.zeros(3, env.act_dim)
    ts = torch.randn(3, 20, env.state_dim)
    with pytest.raises(mt.InputError, match=r"tangent_action has shape \[3, 1, 6\]; expected \[3, 20, 6\]"):
        env.jvp(s, a, ts, torch.zeros(3, 1, env.act_dim))
    with pytest.raises(mt.InputError, match="tangent_action"):
        env.jvp(s, a, ts, torch.zeros(3, env.act_dim))  # probes for the state, none for the action
    with pytest.raises(mt.InputError, match="tangent_state"):
        env.jvp(s, a, torch.zeros(3, 2, 5, env.state_dim), torch.zeros(3, 2, 5, env.act_dim))
    # the accepted shapes agree with per-probe JVPs (no out-of-bounds reads)
    ta = torch.randn(3, 20, env.act_dim)
    many = env.jvp(s, a, ts, ta)
    for p in (0, 7, 19):
        torch.testing.assert_close(many[:, p], env.jvp(s, a, ts[:, p], ta[:, p]))
    _usable(env)


def test_simulator_refuses_mismatched_tangents_itself(env):
    s = env.get_state()
    c = torch.zeros(3, env.sim.control_dim)
    with pytest.raises(ValueError, match="tangent shapes"):
        env.sim.jvp(s, c, torch.zeros(3, 20, env.state_dim), torch.zeros(3, 1, env.sim.control_dim))


@pytest.mark.parametrize("task", ["cloth-fold", "cartpole-swingup", "ant"])
def test_simulators_refuse_wrong_shapes_and_dtypes_instead_of_reading_out_of_bounds(task):
    """A simulator called directly (benchmarks, wrappers) checks what its kernels index: a control
    of the action's width where the simulator's control is wider (ant carries its previous action)
    is a ValueError, not a segfault."""
    e = mt.make(task, num_envs=2, seed=0, **(OPTS if task == "cloth-fold" else {}))
    sim, s = e.sim, e.get_state()
    c = torch.zeros(2, sim.control_dim, dtype=s.dtype)
    for bad_s, bad_c in ((s, c[:, :-1]), (s[:, :-1], c), (s, c[:1]), (s.double(), c.double())):
        for call in (lambda: sim.step(bad_s, bad_c), lambda: sim.jvp(bad_s, bad_c, bad_s, bad_c),
                     lambda: sim.vjp(bad_s, bad_c, bad_s), lambda: sim.jacobian(bad_s, bad_c)):
            with pytest.raises(ValueError, match="do not match"):
                call()
    _, tape = sim.step(s, c, record=True)
    with pytest.raises(ValueError, match="cotangent"):
        sim.vjp_tape(tape, s[:, :-1])
    nxt, _ = sim.step(s, c)
    assert nxt.shape == s.shape and torch.isfinite(nxt).all()


@pytest.mark.parametrize("call", ["jvp", "vjp", "jacobian", "transition", "observe", "set_state"])
def test_none_instead_of_a_tensor(env, call):
    s, a = env.get_state(), torch.zeros(3, env.act_dim)
    args = {"jvp": (None, a, s, a), "vjp": (s, None, s), "jacobian": (s, None), "transition": (None, a),
            "observe": (None,), "set_state": (None,)}[call]
    with pytest.raises(mt.InputError, match="must be a torch tensor or numpy array, got NoneType"):
        getattr(env, call)(*args)
    _usable(env)


def test_numpy_with_negative_strides_and_odd_dtypes(env):
    s = env.get_state().numpy()
    a = np.zeros((3, env.act_dim), dtype=np.float32)
    out = env.transition(s[::-1], a[:, ::-1])  # negative strides: copied, accepted
    torch.testing.assert_close(out, env.transition(torch.from_numpy(s[::-1].copy()), torch.from_numpy(a)))
    with pytest.raises(mt.InputError, match="numpy array of dtype object"):
        env.step(np.array([[None] * env.act_dim] * 3, dtype=object))
    with pytest.raises(mt.InputError, match="dtype"):
        env.step(np.zeros((3, env.act_dim)))  # float64 into a float32 env
    _usable(env)


@pytest.mark.parametrize("seed", ["abc", 2 ** 70, -1, 1.5, True, None])
def test_bad_seeds(env, seed):
    if seed is None:
        env.reset(seed=None)  # None: continue the generator, fine
        return
    with pytest.raises(mt.OptionError, match="seed must be an integer"):
        env.reset(seed=seed)
    with pytest.raises(mt.OptionError, match="seed must be an integer"):
        mt.make("cloth-fold", seed=seed, **OPTS)
    env.reset(seed=2 ** 64 - 1)
    _usable(env)


def test_observe_reward_metrics_check_shapes(env):
    s, a = env.get_state(), torch.zeros(3, env.act_dim)
    wide = torch.cat([s, torch.zeros(3, 5)], 1)
    for fn in (env.observe, env.metrics):
        with pytest.raises(mt.InputError, match=rf"state has shape \[3, {env.state_dim + 5}\]"):
            fn(wide)
    with pytest.raises(mt.InputError, match="action has shape"):
        env.reward(s, a[:2], s)
    with pytest.raises(mt.InputError, match="next_state has shape"):
        env.reward(s, a, s[:1])
    assert env.reward(s, a, s).shape == (3,)


def test_set_state_copies(env):
    s = env.get_state()
    env.set_state(s)
    s += 1.0  # a later in-place edit of the caller's tensor
    assert not torch.equal(env.get_state(), s)
    arr = env.get_state().numpy()
    env.set_state(arr)
    arr += 1.0
    assert not np.array_equal(env.get_state().numpy(), arr)


def test_transition_of_an_exploding_state_raises_like_step_detects(env):
    s = env.get_state()
    s[1, env.sim.n * 3: env.sim.n * 6] = 5e3  # absurd velocities: positions leave the state limit
    a = torch.zeros(3, env.act_dim)
    with pytest.raises(mt.SimulationError, match=r"rows \[1\]"):
        env.transition(s, a)
    with pytest.raises(mt.SimulationError):
        env.transition(s, a.clone().requires_grad_(True))  # the autograd path checks too
    env.set_state(s)
    with pytest.warns(RuntimeWarning, match="blow-up"):
        *_, info = env.step(a)  # step resets such envs instead, and reports them
    assert info["blowup"].tolist() == [False, True, False]
    env.transition(env.get_state(), a)  # fine again


def test_num_envs_beyond_memory_is_refused_up_front():
    with pytest.raises(mt.OptionError, match=r"num_envs=1000000000 needs about .* GiB .* use at most"):
        mt.make("cloth-fold", num_envs=10 ** 9, **OPTS)


def test_bad_arch_is_a_clear_error(monkeypatch):
    from click.testing import CliRunner

    from mbmix_taichi.cli import main

    monkeypatch.setenv("TI_ARCH", "nonsense")
    res = CliRunner().invoke(main, ["gradcheck", "cloth-fold", "--task-option", "resolution=4"])  # `tasks` builds nothing
    assert res.exit_code == 2 and "TI_ARCH='nonsense'" in res.output and "Traceback" not in res.output
    with pytest.raises(mt.OptionError, match="TI_ARCH"):
        mt.make("cloth-fold", **OPTS)


def test_a_gpu_arch_taichi_cannot_start_on_is_refused_not_swapped_for_the_cpu():
    """Taichi falls back to the CPU when it cannot start on CUDA; asked for CUDA, the package says
    so instead of running elsewhere. Where CUDA works, the same request starts on it, on cuda:0."""
    import subprocess
    import sys

    code = ("import mbmix_taichi as mt\n"
            "try:\n"
            "    e = mt.make('cloth-fold', num_envs=1, resolution=4)\n"
            "    print('ARCH', e.arch, e.get_state().device)\n"
            "except mt.OptionError as exc:\n"
            "    print('REFUSED', exc)\n")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, TI_ARCH="cuda"),
                         capture_output=True, text=True, timeout=300).stdout
    assert out.startswith("REFUSED taichi could not start on 'cuda'") or out.startswith("ARCH cuda cuda:0"), out


# ----------------------------------------------------------------------------------- forks
def _child(env, q):
    out = []
    try:
        env.transition(env.get_state(), torch.zeros(env.num_envs, env.act_dim))
        out.append("stepped")
    except mt.ForkError as e:
        out.append(str(e))
    try:
        mt.make("cloth-fold", **OPTS)
        out.append("made")
    except mt.ForkError as e:
        out.append(str(e))
    q.put(out)


def test_forked_worker_fails_at_once_instead_of_hanging(env):
    env.transition(env.get_state(), torch.zeros(3, env.act_dim))  # taichi is running in this process
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(env, q))
    p.start()
    p.join(timeout=120)
    if p.is_alive():
        p.kill()
        pytest.fail("a forked worker hung stepping an env")
    out = q.get(timeout=5)
    assert len(out) == 2 and all("'spawn' or 'forkserver'" in m for m in out), out
    _usable(env)  # the parent is unaffected


# ------------------------------------------------------------------------------ task options
@pytest.mark.parametrize("task, opts, word", [
    ("cloth-fold", dict(stretch=-1.0), "stretch"),
    ("cloth-fold", dict(friction=-0.5), "friction"),
    ("cloth-fold", dict(damping=-0.01), "damping"),
    ("cloth-fold", dict(episode_length=0), "episode_length"),
    ("cloth-fold", dict(episode_length=-3), "episode_length"),
    ("cloth-fold", dict(dt=math.inf), "dt"),
    ("cloth-fold", dict(size=math.inf), "size"),
    ("cloth-fold", dict(size=math.nan), "size"),
    ("cloth-fold", dict(substeps=0), "substeps"),
    ("cloth-fold", dict(resolution="4"), "resolution"),
    ("cloth-fold", dict(mesh=3), "mesh"),
    ("cartpole-swingup", dict(stochastic_init="false"), "stochastic_init"),
    ("cartpole-swingup", dict(substeps=0), "substeps"),
    ("cartpole-swingup", dict(episode_length=1.5), "episode_length"),
    ("hopper", dict(early_termination="no"), "early_termination"),
    ("mjcf", dict(contact_mu=-1.0), "contact_mu"),
])
def test_bad_task_options(task, opts, word):
    with pytest.raises(mt.OptionError, match=rf"option {word} of task '{task}' must be"):
        get_task_class(task)(**opts)


def test_every_builtin_task_option_declares_type_and_range():
    for name in list_tasks():
        cls = get_task_class(name)
        if cls.__module__.startswith("mbmix_taichi.tasks"):
            assert set(cls.default_options) <= set(cls.option_types), name
            cls()  # the defaults satisfy the declarations


def test_cli_task_option_values(tmp_path):
    from click.testing import CliRunner

    from mbmix_taichi.cli import main

    for opt in ("dt=Infinity", "size=inf", "substeps=0", "stretch=-5", "episode_length=0"):
        res = CliRunner().invoke(main, ["train", "cloth-fold", "--task-option", opt, "--out", str(tmp_path / "r")])
        assert res.exit_code == 2 and res.output.startswith("error: option "), (opt, res.output)
        assert "Traceback" not in res.output


# ----------------------------------------------------------------------------------- meshes
def _obj(path, verts, faces):
    path.write_text("".join(f"v {x} {y} {z}\n" for x, y, z in verts)
                    + "".join("f " + " ".join(str(i + 1) for i in f) + "\n" for f in faces))
    return str(path)


_SQUARE = [(x * 0.1, y * 0.1, 0.0) for x in range(4) for y in range(4)]
_SQUARE_F = [f for x in range(3) for y in range(3)
             for f in ([4 * x + y, 4 * (x + 1) + y, 4 * (x + 1) + y + 1], [4 * x + y, 4 * (x + 1) + y + 1, 4 * x + y + 1])]


@pytest.mark.parametrize("case, words", [
    ("nan", ["NaN or Inf", "vertices [3]"]),
    ("degenerate", ["degenerate", "zero area"]),
    ("empty", ["no triangles"]),
    ("single_triangle", ["pickers cannot be placed"]),
    ("pentagon", ["pickers cannot be placed"]),
    ("vertical", ["does not lie in the x-y plane"]),
])
def test_bad_meshes_are_refused_with_the_reason_and_the_mesh_name(tmp_path, case, words):
    if case == "nan":
        v = list(_SQUARE)
        v[2] = (float("nan"), 0.2, 0.0)
        path = _obj(tmp_path / "m.obj", v, _SQUARE_F)
    elif case == "degenerate":
        path = _obj(tmp_path / "m.obj", _SQUARE + [(0.5, 0.0, 0.0), (0.6, 0.0, 0.0), (0.7, 0.0, 0.0)],
                    _SQUARE_F + [[16, 17, 18]])
    elif case == "empty":
        path = _obj(tmp_path / "m.obj", _SQUARE, [])
    elif case == "single_triangle":
        path = _obj(tmp_path / "m.obj", [(0, 0, 0), (0.3, 0, 0), (0, 0.3, 0)], [[0, 1, 2]])
    elif case == "pentagon":
        ang = [2 * math.pi * k / 5 for k in range(5)]
        path = _obj(tmp_path / "m.obj", [(0, 0, 0)] + [(0.2 * math.cos(a), 0.2 * math.sin(a), 0) for a in ang],
                    [[0, k + 1, (k + 1) % 5 + 1] for k in range(5)])
    else:  # a square standing in the x-z plane
        path = _obj(tmp_path / "m.obj", [(x, 0.0, y) for x, y, _ in _SQUARE], _SQUARE_F)
    with pytest.raises(mt.OptionError) as e:
        mt.make("cloth-fold", mesh=path, substeps=2)
    for w in words:
        assert w in str(e.value), str(e.value)
    assert "m.obj" in str(e.value)


def test_a_good_mesh_and_the_smallest_grid_still_work(tmp_path):
    env = mt.make("cloth-fold", mesh=_obj(tmp_path / "sq.obj", _SQUARE, _SQUARE_F), substeps=2)
    assert env.sim.n == 16
    with pytest.raises(mt.OptionError, match="resolution"):
        mt.make("cloth-fold", resolution=3)  # its pickers would overlap


# ------------------------------------------------------------------------- fast path (issue 12)
def test_fast_launch_path_gives_the_same_bits_as_taichis_own(env, monkeypatch):
    from mbmix_taichi.physics import _launch

    s = env.get_state()
    a = torch.rand(3, env.act_dim) * 2 - 1
    ts, ta = torch.randn(3, 4, env.state_dim), torch.randn(3, 4, env.act_dim)
    cot = torch.randn(3, env.state_dim)
    fast = (env.transition(s, a), env.jvp(s, a, ts, ta), *env.vjp(s, a, cot))
    monkeypatch.setattr(_launch, "_DISABLED", True)
    monkeypatch.setattr(env.sim, "_key", ("slow",))  # a key with no cached launcher: Taichi's path
    slow = (env.transition(s, a), env.jvp(s, a, ts, ta), *env.vjp(s, a, cot))
    for f, g in zip(fast, slow):
        assert torch.equal(f, g)


# --------------------------------------------------------------------------------- learner config
@pytest.mark.parametrize("content, words", [
    ('[1, 2, 3]', ["holds a list", "expected a JSON object"]),
    ('{"actor_hidden": [64, -8]}', ["actor_hidden", "positive integer layer sizes"]),
    ('{"model_hidden": [0]}', ["model_hidden"]),
    ('{"actor_lr": -0.001}', ["actor_lr must be > 0"]),
    ('{"critic_lr": 0}', ["critic_lr must be > 0"]),
    ('{"betas": [0.9, 1.5]}', ["betas must be two numbers in [0, 1)"]),
    ('{"betas": [0.9]}', ["betas"]),
    ('{"buffer_size": 0}', ["buffer_size must be >= 1"]),
    ('{"gamma": 1.5}', ["gamma"]),
    ('{"grad_norm": NaN}', ["grad_norm"]),
])
def test_bad_learner_configs_fail_before_any_network(tmp_path, monkeypatch, content, words):
    from click.testing import CliRunner

    import _toy  # noqa: F401  (registers toy-reach)
    from mbmix_taichi.cli import main
    from mbmix_taichi.learner import agent

    def no_networks(*a, **k):
        raise AssertionError("a network was built before the config was validated")

    monkeypatch.setattr(agent, "build_networks", no_networks)
    cfg = tmp_path / "c.json"
    cfg.write_text(content)
    res = CliRunner().invoke(main, ["train", "toy-reach", "--config", str(cfg), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and res.output.startswith("error: "), res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    for w in words:
        assert w in res.output, res.output
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- run directories
class _Evil:
    """Unpickling this writes a marker file: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


_FAST_RUN = ["--task-option", "episode_length=8", "--num-envs", "2", "--quiet", "--iterations", "1",
             "--algo", "shac", "--config"]
_TINY_CFG = '{"actor_hidden": [8], "critic_hidden": [8], "critic_iterations": 1, "horizon": 4, "eval_episodes": 2}'


def _train_tiny(tmp_path, out):
    from click.testing import CliRunner

    import _toy  # noqa: F401
    from mbmix_taichi.cli import main

    cfg = tmp_path / "tiny.json"
    cfg.write_text(_TINY_CFG)
    res = CliRunner().invoke(main, ["train", "toy-reach", "--out", str(out), *_FAST_RUN, str(cfg)])
    assert res.exit_code == 0, res.output
    return main


def test_malicious_pickle_in_a_run_directory_is_refused_not_run(tmp_path):
    from click.testing import CliRunner

    out = tmp_path / "run"
    main = _train_tiny(tmp_path, out)
    marker = tmp_path / "pwned"
    for name, args in (("policy.pt", ["eval", str(out)]),
                       ("checkpoint.pt", ["train", "toy-reach", "--out", str(out), "--resume", "--quiet"])):
        good = (out / name).read_bytes()
        torch.save({"format": 1, "actor": _Evil(str(marker))}, out / name)
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2, res.output
        assert "refusing to load " + name in res.output and "data, not code" in res.output, res.output
        assert not marker.exists(), "the pickle ran"
        (out / name).write_bytes(good)
    res = CliRunner().invoke(main, ["eval", str(out), "--episodes", "2"])  # the restored files still load
    assert res.exit_code == 0, res.output


def test_second_trainer_on_the_same_run_directory_refuses_at_once(tmp_path):
    import subprocess
    import sys

    import _toy  # noqa: F401
    from mbmix_taichi.learner import Run, load_policy, resolve

    out = tmp_path / "run"
    cfg = resolve("toy-reach", "shac", overrides={"iterations": 2, "num_envs": 2, "actor_hidden": [8],
                                                  "critic_hidden": [8], "critic_iterations": 1, "horizon": 4,
                                                  "task_options": {"episode_length": 8}})
    first = Run(cfg, out, progress=False)  # holds the lock for its life
    first.train(stop_after=1)
    before = {f: (out / f).read_bytes() for f in ("config.json", "metrics.csv", "checkpoint.pt")}
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import _toy; from mbmix_taichi.cli import main; "
            "main(sys.argv[2:])")
    res = subprocess.run([sys.executable, "-c", code, tests_dir, "train", "toy-reach", "--out", str(out),
                          "--iterations", "1", "--quiet", "--task-option", "episode_length=8"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    assert "is in use by a training process (pid " in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert {f: (out / f).read_bytes() for f in before} == before  # nothing of the first run was touched
    first.train()  # and it finishes normally
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 1 + 2
    load_policy(out)
    from mbmix_taichi.learner.trainer import unlock_run_dir

    unlock_run_dir(out)  # the lock ends with the process (or here): another process may resume it now
    res = subprocess.run([sys.executable, "-c", code, tests_dir, "train", "toy-reach", "--out", str(out),
                          "--resume", "--iterations", "3", "--quiet"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 1 + 3


_DEBUG_SCRIPT = r'''
import torch, mbmix_taichi as mt
from mbmix_taichi.physics import cloth
env = mt.make("cloth-fold", num_envs=2, resolution=4, substeps=2)
s, a = env.get_state(), torch.rand(2, env.act_dim) * 2 - 1
for P in (1, 3):
    env.jvp(s, a, torch.randn(2, P, env.state_dim), torch.randn(2, P, env.act_dim))
env.jvp(s, a, torch.randn(2, env.state_dim), torch.randn(2, env.act_dim))
env.vjp(s, a, torch.randn(2, env.state_dim))
env.jacobian(s[:1], a[:1])
env.transition(s[:1], a[:1]).sum()
env.transition(s, a.clone().requires_grad_(True)).sum().backward()
env.step(a)
print("accepted inputs: no out-of-bounds access")
sim = env.sim  # control: a launch that skips the checks IS caught in debug mode
_, (X, V, U, N, _clamp) = sim.step(s[:1], torch.zeros(1, sim.control_dim), record=True)
try:
    cloth._tangent(torch.zeros(5 * sim.state_dim), torch.zeros(sim.control_dim), X, V, U,
                   torch.empty(5 * sim.model.num_springs * 3), *sim._topo, 1, 5, sim.n, sim.K, sim.substeps)
except Exception as e:
    print("unchecked launch caught:", type(e).__name__)
'''


def test_kernels_stay_in_bounds_under_taichi_debug_mode():
    """Every kernel, launched through the env API with accepted inputs, under Taichi's bounds checks."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", _DEBUG_SCRIPT], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "MBMIX_TAICHI_DEBUG": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "accepted inputs: no out-of-bounds access" in res.stdout
    assert "unchecked launch caught: TaichiAssertionError" in res.stdout, res.stdout + res.stderr[-2000:]


def test_single_env_serial_launch_equals_the_batched_one(env):
    s, a = env.get_state(), torch.rand(3, env.act_dim) * 2 - 1
    batched = env.transition(s, a)
    for i in range(3):  # one env runs its loop on the calling thread, a batch on the thread pool
        assert torch.equal(env.transition(s[i:i + 1], a[i:i + 1])[0], batched[i])
