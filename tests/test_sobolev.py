"""The Sobolev model loss (eq. 4, docs/method.md): full-Jacobian form, random-projection estimate,
and the effect of the Jacobian term on a learned model's Jacobian error."""
import math

import pytest
import torch

import _toy  # noqa: F401  (registers toy-reach)
import mbmix_taichi as mt
from mbmix_taichi.learner.model import EnsembleModel, sobolev_loss


def _model(ds=4, da=2, seed=0):
    torch.manual_seed(seed)
    m = EnsembleModel(ds, da, [16, 16], ensemble=3).double()
    with torch.no_grad():
        m.in_mean.uniform_(-0.1, 0.1)
        m.in_std.uniform_(0.5, 2.0)
        m.out_mean.uniform_(-0.1, 0.1)
        m.out_std.uniform_(0.2, 1.0)
        for w in m.weights:
            w.mul_(5.0)
    return m


def _batch(ds=4, da=2, b=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, ds, generator=g, dtype=torch.float64)
    a = torch.rand(b, da, generator=g, dtype=torch.float64) * 2 - 1
    s2 = s + 0.1 * torch.randn(b, ds, generator=g, dtype=torch.float64)
    js = torch.randn(b, ds, ds, generator=g, dtype=torch.float64)
    ja = torch.randn(b, ds, da, generator=g, dtype=torch.float64)
    return s, a, s2, js, ja


def _autograd_jacobians(m, s, a):
    """Model Jacobians by plain autograd, independent of the model's tangent code."""
    e, b = m.ensemble, s.shape[0]
    js = torch.zeros(e, b, m.state_dim, m.state_dim, dtype=s.dtype)
    ja = torch.zeros(e, b, m.state_dim, m.act_dim, dtype=s.dtype)
    for i in range(b):
        fs, fa = torch.autograd.functional.jacobian(lambda x, u: m.predict_all(x[None], u[None])[:, 0], (s[i], a[i]))
        js[:, i], ja[:, i] = fs, fa
    return js, ja


def test_model_tangents_match_autograd():
    m = _model()
    s, a, *_ = _batch()
    js, ja = m.jacobian(s, a)
    rs, ra = _autograd_jacobians(m, s, a)
    torch.testing.assert_close(js, rs)
    torch.testing.assert_close(ja, ra)


def test_full_jacobian_loss_equals_definition():
    m = _model()
    s, a, s2, js, ja = _batch()
    alpha, ds = 0.7, m.state_dim
    c = m.in_std  # column scaling of the Jacobian error (model input units)
    t_in = torch.diag_embed(c).expand(s.shape[0], -1, -1)
    t_out = torch.cat([js, ja], -1).transpose(1, 2) * c[None, :, None]
    total, state, jac = sobolev_loss(m, s, a, s2, t_in, t_out, alpha)
    # the definition: E[ ||D(s_hat - s')||^2 / ds + alpha (||D(Js_hat - Js)Cs||_F^2 + ||D(Ja_hat - Ja)Ca||_F^2) / (ds (ds + da)) ]
    hs, ha = _autograd_jacobians(m, s, a)
    D = 1.0 / m.out_std
    pred = m.predict_all(s, a)
    want_state = ((D * (pred - s2)) ** 2).sum(-1).mean() / ds
    es = D[:, None] * (hs - js) * c[:ds]
    ea = D[:, None] * (ha - ja) * c[ds:]
    want_jac = ((es ** 2).sum((-1, -2)) + (ea ** 2).sum((-1, -2))).mean() / (ds * (ds + m.act_dim))
    torch.testing.assert_close(state, want_state)
    torch.testing.assert_close(jac, want_jac)
    torch.testing.assert_close(total, want_state + alpha * want_jac)


def test_projected_estimate_is_unbiased():
    m = _model()
    s, a, s2, js, ja = _batch(b=2)
    c = m.in_std
    full_in = torch.diag_embed(c).expand(2, -1, -1)
    full_out = torch.cat([js, ja], -1).transpose(1, 2) * c[None, :, None]
    _, _, full = sobolev_loss(m, s, a, s2, full_in, full_out, 1.0)
    J = torch.cat([js, ja], -1)
    g = torch.Generator().manual_seed(3)
    estimates = []
    P = 4
    for _ in range(400):  # many independent probe sets of P probes each
        t_in = torch.randn(2, P, 6, generator=g, dtype=torch.float64) * c / math.sqrt(P)
        t_out = torch.einsum("bij,bpj->bpi", J, t_in)
        estimates.append(sobolev_loss(m, s, a, s2, t_in, t_out, 1.0)[2])
    est = torch.stack(estimates)
    # single estimates scatter, their mean approaches the full value (unbiased)
    assert est.std() > 0.05 * full
    assert abs(est.mean() - full) < 4 * est.std() / math.sqrt(len(est))
    assert abs(est.mean() - full) / full < 0.05


def _toy_data(n, seed):
    env = mt.make("toy-reach", num_envs=n, seed=seed, dtype="float64")
    g = torch.Generator().manual_seed(seed)
    s = torch.cat([torch.rand(n, 2, generator=g, dtype=torch.float64) * 3 - 1.5,
                   torch.rand(n, 2, generator=g, dtype=torch.float64) * 4 - 2], -1)
    a = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1
    s2 = env.transition(s, a)
    js, ja = env.jacobian(s, a)
    return s, a, s2, js, ja


def test_sobolev_model_has_lower_jacobian_error_than_mse():
    torch.set_num_threads(1)
    s, a, s2, js, ja = _toy_data(48, seed=0)
    hs_, ha_, h2_, hjs, hja = _toy_data(512, seed=1)  # held out
    errs = {}
    for alpha in (0.0, 1.0):  # per-entry means: alpha 1 weighs a Jacobian entry like a state entry
        torch.manual_seed(0)
        m = EnsembleModel(4, 2, [32, 32], ensemble=1).double()
        m.fit_normaliser(s, a, s2)
        opt = torch.optim.Adam(m.parameters(), lr=3e-3)
        c = m.in_std
        t_in = torch.diag_embed(c).expand(len(s), -1, -1)
        t_out = torch.cat([js, ja], -1).transpose(1, 2) * c[None, :, None]
        for _ in range(300):
            loss = sobolev_loss(m, s, a, s2, t_in, t_out, alpha)[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            ms, ma = m.jacobian(hs_, ha_)
            errs[alpha] = float(((ms[0] - hjs) ** 2).sum((-1, -2)).mean() + ((ma[0] - hja) ** 2).sum((-1, -2)).mean())
    assert errs[1.0] < 0.7 * errs[0.0], errs


# -- adjoint pairs (w, w^T J): the VJPs a policy-gradient backward pass ran -----------------------

def test_model_cotangents_match_autograd():
    m = _model()
    s, a, *_ = _batch()
    w = torch.randn(s.shape[0], m.state_dim, dtype=torch.float64)
    pred, got = m.predict_cotangents(s, a, w)
    rs, ra = _autograd_jacobians(m, s, a)
    want = torch.einsum("bi,ebij->ebj", w, torch.cat([rs, ra], -1))
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(pred, m.predict_all(s, a))


def test_adjoint_loss_equals_definition_and_ignores_the_cotangents_scale():
    from mbmix_taichi.learner.model import adjoint_loss

    m = _model()
    s, a, s2, js, ja = _batch()
    w = torch.randn(s.shape[0], m.state_dim, dtype=torch.float64)
    wj = torch.einsum("bi,bij->bj", w, torch.cat([js, ja], -1))  # exact pairs of the "true" J
    got = adjoint_loss(m, s, a, w, wj)
    # the definition: f w with ||D f w||^2 = ds, error (f w)^T (J_hat - J) C, mean square per entry
    hs, ha = _autograd_jacobians(m, s, a)
    ds, din = m.state_dim, m.state_dim + m.act_dim
    f = math.sqrt(ds) / (w * m.out_std).norm(dim=-1, keepdim=True)
    err = torch.einsum("bi,ebij->ebj", f * w, torch.cat([hs - js, ha - ja], -1)) * m.in_std
    torch.testing.assert_close(got, (err ** 2).sum(-1).mean() / (ds * din))
    # a pair is a pair at any scale, per row
    scale = torch.tensor([1e-3, 1.0, 7.0, 1e4, 0.5], dtype=torch.float64)[:, None]
    torch.testing.assert_close(adjoint_loss(m, s, a, w * scale, wj * scale), got)
    # pairs of the model's own Jacobian cost nothing
    own = torch.einsum("bi,bij->bj", w, torch.cat([hs[1], ha[1]], -1)).detach()
    m1 = EnsembleModel(m.state_dim, m.act_dim, [16, 16], ensemble=1).double()
    m1.load_state_dict({k: (v[1:2] if v.dim() == 3 else v) for k, v in m.state_dict().items()})
    assert adjoint_loss(m1, s, a, w, own).item() < 1e-20


def test_vjp_observer_reports_the_simulators_exact_vjps():
    """What a backward pass through `transition` pulls back is reported as (w, w^T J) pairs that
    equal the env's own VJP (and a full Jacobian), for the cloth and an articulated robot."""
    for task, opts in (("cloth-fold", {"resolution": 4}), ("cartpole-swingup", {})):
        env = mt.make(task, num_envs=3, seed=0, dtype="float64", **opts)
        s = env.get_state()
        a = (torch.rand(3, env.act_dim, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
        seen = []
        with env.vjp_observer(lambda *pair: seen.append(pair)):
            s1 = env.transition(s, a)
        a2 = torch.rand(3, env.act_dim, dtype=torch.float64) * 1.6 - 0.8
        s2 = env.transition(s1, a2)  # outside the observer: not reported
        loss = (s2 ** 2).sum() + (s1 * torch.linspace(0, 1, env.state_dim, dtype=torch.float64)).sum()
        loss.backward()
        assert len(seen) == 1
        ss, aa, w, g_s, g_a = seen[0]
        torch.testing.assert_close(ss, s)
        torch.testing.assert_close(aa, a.detach())
        want_s, want_a = env.vjp(s, a.detach(), w)
        torch.testing.assert_close(g_s, want_s)
        torch.testing.assert_close(g_a, want_a)
        torch.testing.assert_close(g_a, a.grad)  # the action's whole gradient flows through this VJP
        js, ja = env.jacobian(s, a.detach())
        torch.testing.assert_close(g_s, torch.einsum("bi,bij->bj", w, js))
        assert float(w.abs().sum()) > 0


def test_mbmix_adjoint_pairs_fill_their_buffer_and_train_the_model():
    from mbmix_taichi.learner import resolve
    from mbmix_taichi.learner.algos import make_agent
    from mbmix_taichi.errors import OptionError

    small = dict(num_envs=4, actor_hidden=[16], critic_hidden=[16], critic_iterations=1, model_hidden=[32],
                 model_updates=5, model_batch=32, rollout_batch=16, policy_updates=1, model_horizon=4,
                 horizon=6, checkpoint_every=0, ensemble_size=2, sobolev_adjoint_alpha=1.0)
    cfg = resolve("toy-reach", "mbmix", overrides=small)
    agent = make_agent(cfg, mt.make("toy-reach", num_envs=4, seed=0))
    out = [agent.iterate() for _ in range(4)]
    # every iteration's real window (6 steps x 4 envs) was pulled back once by the actor update
    assert agent.adjoints.size == 4 * 6 * 4
    assert all(math.isfinite(o["model_adjoint_loss"]) for o in out[1:])
    p = agent.adjoints.sample(16)
    js, ja = agent.env.jacobian(p["s"], p["a"])
    torch.testing.assert_close(p["wj"], torch.einsum("bi,bij->bj", p["w"], torch.cat([js, ja], -1)),
                               rtol=2e-2, atol=1e-3)  # (stored in bfloat16)
    for algo in ("mix", "mbmix-model", "shac"):
        with pytest.raises(OptionError, match="sobolev_adjoint_alpha"):
            resolve("toy-reach", algo, overrides={"sobolev_adjoint_alpha": 1.0})
    with pytest.raises(OptionError, match="sobolev_adjoint_alpha"):
        resolve("toy-reach", "mbmix-mse", overrides={"sobolev_adjoint_alpha": 1.0})
