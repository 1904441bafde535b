"""Fast checks of the pieces tools/study_tabular.py and tools/study_grad_variance.py rely on."""
import importlib.util
import math
from pathlib import Path

import pytest
import torch

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_test_{name}", TOOLS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    dtype = torch.get_default_dtype()
    try:
        spec.loader.exec_module(mod)
    finally:  # study_tabular sets float64 as torch's default at import; keep it out of other tests
        torch.set_default_dtype(dtype)
    return mod


@pytest.fixture(autouse=True)
def _float64_default():
    """The tabular study computes in torch's default dtype, which it sets to float64 when run."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)


@pytest.fixture(scope="module")
def gv():
    return _load("study_grad_variance")


@pytest.fixture(scope="module")
def tab():
    return _load("study_tabular")


# -- MIX objective -------------------------------------------------------------------------
def _random_window(h=7, b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(h, b, generator=g, dtype=torch.float64), torch.randn(h + 1, b, generator=g, dtype=torch.float64)


def test_mix_lambda_one_is_discounted_sum(gv):
    r, v = _random_window()
    gamma = 0.9
    disc = gamma ** torch.arange(r.shape[0], dtype=r.dtype)[:, None]
    # lambda = 1, V = 0: the plain discounted sum (APG / SVG(inf))
    R0 = gv.mix_objective(r, torch.zeros_like(v), gamma, 1.0)[0]
    torch.testing.assert_close(R0, (disc * r).sum(0))
    # lambda = 1 with a value: SHAC's sum + gamma^h V(s_h)
    R0 = gv.mix_objective(r, v, gamma, 1.0)[0]
    torch.testing.assert_close(R0, (disc * r).sum(0) + gamma ** r.shape[0] * v[-1])


def test_mix_lambda_zero_is_one_step(gv):
    r, v = _random_window()
    R0 = gv.mix_objective(r, v, 0.95, 0.0)[0]
    torch.testing.assert_close(R0, r[0] + 0.95 * v[1])


@pytest.mark.parametrize("lam", [0.3, 0.9, 0.98])
def test_mix_recursion_equals_eq2_and_eq3(gv, lam):
    r, v = _random_window(h=9, seed=1)
    gamma, h = 0.97, 9
    R0 = gv.mix_objective(r, v, gamma, lam)[0]
    # eq. 2: explicit mixture of H-step objectives, tail weight lambda^{h-1} on J_h
    torch.testing.assert_close(R0, gv.mix_objective_eq2(r, v, gamma, lam))
    # eq. 3 (finite window): sum_t (gamma lam)^t (r_t + (1 - lam) gamma V_{t+1}) + (gamma lam)^h V_h
    gl = (gamma * lam) ** torch.arange(h, dtype=r.dtype)[:, None]
    eq3 = (gl * (r + (1 - lam) * gamma * v[1:])).sum(0) + (gamma * lam) ** h * v[h]
    torch.testing.assert_close(R0, eq3)


def test_mix_targets_are_lambda_returns(gv):
    """R_t of the recursion are the line-9 targets: R_t = mix objective of the window starting at t."""
    r, v = _random_window(h=6, seed=2)
    R = gv.mix_objective(r, v, 0.9, 0.8)
    for t in range(6):
        torch.testing.assert_close(R[t], gv.mix_objective(r[t:], v[t:], 0.9, 0.8)[0])


# -- variance estimator ---------------------------------------------------------------------
def test_grad_variance_recovers_known_variance(gv):
    g = torch.Generator().manual_seed(0)
    sig = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    G = 5.0 + sig * torch.randn(20000, 4, generator=g, dtype=torch.float64)
    st = gv.grad_variance(G, n_boot=50)
    assert st["trace_cov"] == pytest.approx(float((sig ** 2).sum()), rel=0.03)
    assert st["mean_sq"] == pytest.approx(100.0, rel=0.01)
    assert 0 < st["se"] < 0.05 * st["trace_cov"]
    # exact on a tiny input: samples (0, 0), (2, 4) -> variances 2 and 8
    st = gv.grad_variance(torch.tensor([[0.0, 0.0], [2.0, 4.0]]), n_boot=2)
    assert st["trace_cov"] == pytest.approx(10.0)


# -- toy system and the gradient study core -------------------------------------------------
def test_toy_pendulum_api_and_gradient(gv):
    env = gv.ToyPendulum(num_envs=3, seed=0)
    obs = env.reset(seed=1)
    assert obs.shape == (3, env.obs_dim) and env.get_state().shape == (3, env.state_dim)
    s = env.get_state().requires_grad_(True)
    a = torch.full((3, 1), 0.3, dtype=env.dtype, requires_grad=True)
    f = lambda s_, a_: env.reward(s_, a_, env.transition(s_, a_)).sum() + env.transition(s_, a_).sum()  # noqa: E731
    assert torch.autograd.gradcheck(f, (s, a))
    obs2 = env.reset(seed=1)
    torch.testing.assert_close(obs, obs2)  # seeded reset


def test_gradient_samples_shac_equals_mix_lambda_one(gv):
    env = gv.ToyPendulum(num_envs=2, seed=0)
    torch.manual_seed(0)
    pol = gv.GaussianPolicy(env.obs_dim, env.act_dim).double()
    val = gv.ScaledValue(env.obs_dim).double()
    for p in val.parameters():
        p.requires_grad_(False)
    out = gv.gradient_samples(env, pol, val, [3, 5], [1.0, 0.5], n_seeds=3, gamma=0.99, log=lambda *a: None)
    n_params = sum(p.numel() for p in pol.parameters())
    assert out[("SHAC", 5)].shape == (3, n_params)
    torch.testing.assert_close(out[("SHAC", 5)], out[("MIX-1", 5)])       # same noise, same objective
    assert not torch.allclose(out[("SHAC", 5)], out[("MIX-0.5", 5)])
    # the per-seed gradient equals a finite difference of the objective along a random direction
    params = list(pol.parameters())
    direction = [torch.randn_like(p) for p in params]
    env.reset(seed=1000)
    s0 = env.get_state()
    eps = torch.randn(5, 2, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def J():
        r, v = gv.rollout_returns(env, pol, val, s0, eps, 0.99, 5)
        return gv.mix_objective(r, v, 0.99, 0.5)[0].mean()

    g = out[("MIX-0.5", 5)][0]
    dd = torch.cat([d.reshape(-1) for d in direction])
    with torch.no_grad():
        d = 1e-6
        for p, u in zip(params, direction):
            p.add_(d * u)
        jp = float(J())
        for p, u in zip(params, direction):
            p.sub_(2 * d * u)
        jm = float(J())
        for p, u in zip(params, direction):
            p.add_(d * u)
    assert float(g @ dd) == pytest.approx((jp - jm) / (2 * d), rel=1e-5, abs=1e-8)


# -- tabular MDP -----------------------------------------------------------------------------
def test_tabular_exact_return_matches_monte_carlo(tab):
    mdp = tab.make_mdp(0, n_states=6, n_actions=3)
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    gamma = 0.9
    J = float(tab.exact_return(mdp, logits, gamma))
    mc = tab.mc_return(mdp, logits, gamma, n=20000, T=120, seed=0)   # gamma^120 ~ 3e-6
    # rewards in [0, 1]: return std <= 1 / (1 - gamma) = 10, so the MC s.e. <= 0.07
    assert mc == pytest.approx(J, abs=0.25)


def test_tabular_gradient_matches_finite_differences(tab):
    mdp = tab.make_mdp(3, n_states=5, n_actions=4)
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda l: tab.exact_return(mdp, l, 0.95), (logits,))


def test_tabular_distributional_rollout_is_the_exact_return(tab):
    """Exact dynamics from d0 = p0: the T-step APG objective converges to J, its gradient to grad J."""
    mdp = tab.make_mdp(0, n_states=8, n_actions=3)
    gamma, T = 0.9, 250
    logits = torch.randn(1, 8, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64, requires_grad=True)
    rew, ds = tab.rollout(mdp, logits, mdp["p0"].expand(1, 1, -1), T)
    J_apg = tab.apg_objective(rew, gamma)[0]
    J = tab.exact_return(mdp, logits, gamma)[0]
    torch.testing.assert_close(J_apg, J, rtol=1e-9, atol=1e-9)
    g1 = torch.autograd.grad(J_apg, logits, retain_graph=True)[0]
    g2 = torch.autograd.grad(J, logits)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-9)
    # MIX with the exact value is unbiased in value: R_0 = J for any lambda
    v = tab.exact_value(mdp, tab.policy_probs(logits.detach()), gamma)
    vals = torch.einsum("tnbs,ns->tnb", ds, v)
    R0 = tab.mix_objective(rew, vals, gamma, 0.7)[0].mean(-1)[0]
    torch.testing.assert_close(R0, J, rtol=1e-9, atol=1e-9)


def test_tabular_sampled_successors_are_unbiased(tab):
    """E over sampled successor tables of d_t equals p0 P_pi^t; sampled kernels follow P."""
    mdp = tab.make_mdp(1, n_states=6, n_actions=2)
    g = torch.Generator().manual_seed(0)
    n, B, T = 1, 4000, 3
    logits = torch.zeros(n, 6, 2, dtype=torch.float64)
    d0 = mdp["p0"].expand(n, B, -1)
    succ = tab.sample_successors(mdp, T, n, B, 1, g)
    _, ds = tab.rollout(mdp, logits, d0, T, succ, 1)
    _, ds_exact = tab.rollout(mdp, logits, mdp["p0"].expand(1, 1, -1), T)
    torch.testing.assert_close(ds[-1].mean(1)[0], ds_exact[-1, 0, 0], atol=0.01, rtol=0)
    assert torch.allclose(ds.sum(-1), torch.ones(()).double())


def test_tabular_score_estimator_is_unbiased(tab):
    """The DiCE (score-function) gradient of sampled trajectories averages to the exact gradient."""
    mdp = tab.make_mdp(2, n_states=4, n_actions=2)
    gamma, T, n = 0.5, 12, 20000
    l0 = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    logits = l0.expand(n, -1, -1).clone().requires_grad_(True)
    g = torch.Generator().manual_seed(1)
    rew, ds, boxes = tab.estimate(mdp, logits, n, 1, T, "score", g)
    G = torch.autograd.grad(tab.objective("APG", rew, ds, boxes, None, gamma, 1.0).sum(), logits)[0]
    l1 = l0.clone().requires_grad_(True)
    true = torch.autograd.grad(tab.exact_return(mdp, l1, gamma), l1)[0]
    se = G.std(0) / math.sqrt(n)
    assert ((G.mean(0) - true).abs() <= 4 * se + 1e-3).all()


# -- tools/pnp_references.py and tools/study_pnp_gradients.py (the pick-and-place cloth tasks)
def test_pnp_cem_plan_returns_more_than_holding_still():
    ref = _load("pnp_references")
    options = ref.task_options("cloth-fold-pnp", ["resolution=4"])
    assert options["resolution"] == 4
    plan, steps = ref.cem("cloth-fold-pnp", options, seed=0, population=16, iterations=3)
    assert plan.shape == (3, 4) and steps == 16 * 3 * 3
    assert bool(((plan >= -1) & (plan <= 1)).all())
    both = torch.stack([plan, torch.zeros(3, 4, dtype=plan.dtype)])
    r = ref.returns("cloth-fold-pnp", options, both.repeat(8, 1, 1), seed=5)  # 8 starts for each plan
    assert r.shape == (16,) and bool(torch.isfinite(r).all())
    found, still = r[0::2], r[1::2]
    assert float(found.mean()) > float(still.mean()) + 0.05, (found, still)


def test_pnp_gradient_estimates_are_the_exact_gradient_and_the_score_function():
    st = _load("study_pnp_gradients")
    mu = torch.tensor([0.5, 0.0, -0.5, 0.0], dtype=torch.float64)
    r, path, score = st.estimates("cloth-fold-pnp", mu, 0.2, 4, seed=0, options={"resolution": 4})
    assert r.shape == (4,) and path.shape == (4, 4) and score.shape == (4, 4)
    assert bool((path[:, :2] == 0).all())  # the pick point only chooses particles
    # the path estimate is each sample's exact gradient: a central difference in the place x of sample 0
    import mbmix_taichi as mt
    env = mt.make("cloth-fold-pnp", num_envs=4, seed=0, dtype="float64", resolution=4)
    env.reset(0)
    s0 = env.get_state()[[0, 0]]  # sample 0's start, twice
    eps = torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = (mu + 0.2 * eps[0]).clamp(-1, 1)
    h = 1e-6
    pair = torch.stack([a + torch.tensor([0, 0, h, 0.0]), a - torch.tensor([0, 0, h, 0.0])]).to(env.dtype)
    rp = env.reward(s0, pair, env.transition(s0, pair))
    fd = float(rp[0] - rp[1]) / (2 * h)
    assert math.isclose(fd, float(path[0, 2]), rel_tol=1e-4, abs_tol=1e-6), (fd, float(path[0, 2]))
    # the score-function estimate: (r - mean r) eps / sigma with the same noise
    assert torch.allclose(score, (r - r.mean())[:, None] * eps / 0.2)


def test_gradient_error_study_separates_state_error_from_jacobian_error():
    """tools/study_gradient_error.py: a 'model' that is the simulator shifted by a constant has
    exact Jacobians and wrong states: its Jacobian-only variant agrees with the simulator's
    gradient (cosine 1); its states-only variant is the model itself; a perfect model scores 1."""
    import _toy  # noqa: F401  (registers toy-reach)
    import mbmix_taichi as mt
    from mbmix_taichi.learner import resolve
    from mbmix_taichi.learner.algos import make_agent

    ge = _load("study_gradient_error")
    cfg = resolve("toy-reach", "mbmix", overrides=dict(num_envs=4, actor_hidden=[16], critic_hidden=[16],
                                                        model_hidden=[16], ensemble_size=2, horizon=6))
    # (this file's tests run with float64 as torch's default dtype: the networks are float64)
    agent = make_agent(cfg, mt.make("toy-reach", num_envs=4, seed=0, dtype="float64"))
    agent.iterate()
    with torch.no_grad():  # a policy that acts (the untrained head starts near zero)
        for p in agent.actor.parameters():
            p.add_(0.3 * torch.randn_like(p))
    sim = agent.env.sim
    exact = lambda s, a, member=None: sim.f(s, agent.env.task.control(a))  # noqa: E731
    agent.model_step = exact
    perfect = ge.measure(agent, 3, seed=5)
    for name, cos in perfect.items():
        assert cos == pytest.approx([1.0] * 3, abs=1e-5), name
    shift = torch.tensor([0.3, -0.2, 0.0, 0.1])
    agent.model_step = lambda s, a, member=None: exact(s, a) + shift.to(s.dtype)  # noqa: E731
    shifted = ge.measure(agent, 3, seed=5)
    assert shifted["model Jacobian"] == pytest.approx([1.0] * 3, abs=1e-5)
    assert shifted["model states"] == pytest.approx(shifted["model"], abs=1e-5)
    assert min(shifted["model"]) < 0.999  # the state error does change the gradient
