"""The learner's parts against their definitions: the squashed policy's log-density, per-env
gradient truncation, the Sobolev probes' scale, MB-MIX's Fig. 1 objective, trajectory optimisation."""
import math

import pytest
import torch

import _toy  # noqa: F401  (registers toy-reach)
import mbmix_taichi as mt
from mbmix_taichi.learner import resolve
from mbmix_taichi.learner.agent import GradTruncation
from mbmix_taichi.learner.algos import make_agent
from mbmix_taichi.learner.mbmix import rescale_probes
from mbmix_taichi.learner.nets import Actor
from mbmix_taichi.learner.objectives import j_mix_direct

SMALL = dict(num_envs=4, actor_hidden=[16], critic_hidden=[16], critic_iterations=1, model_hidden=[32],
             model_updates=5, model_batch=32, rollout_batch=16, policy_updates=1, model_horizon=4,
             horizon=6, checkpoint_every=0, ensemble_size=2)


def _agent(algo, **kw):
    cfg = resolve("toy-reach", algo, overrides={**SMALL, **kw})
    env = mt.make("toy-reach", num_envs=cfg.num_envs, seed=cfg.seed)
    return make_agent(cfg, env)


def test_squashed_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    actor = Actor(5, 3, [8], init_log_std=-0.5)
    with torch.no_grad():
        actor.net[-1].weight.normal_()  # a head that is not near zero
    obs = torch.randn(64, 5)
    a = actor(obs)
    assert a.abs().max() < 1 and a.requires_grad
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(actor.net(obs), actor.log_std.exp()), [torch.distributions.TanhTransform()])
    a = a.detach().clamp(-0.999, 0.999)
    torch.testing.assert_close(actor.log_prob(obs, a), dist.log_prob(a).sum(-1), rtol=1e-4, atol=1e-4)
    # entropy estimate: -E log pi, compared with a large-sample estimate from torch.distributions
    samples = dist.sample((4000,)).clamp(-0.999999, 0.999999)
    ref = -dist.log_prob(samples).sum(-1).mean(0)
    est = actor.entropy_estimate(obs, samples=4000)
    assert est.shape == ref.shape
    assert abs(float(est.mean() - ref.mean())) < 0.02  # two Monte-Carlo estimates of the same mean
    assert (est - ref).abs().max() < 0.2


def test_saturated_actions_keep_their_gradient():
    actor = Actor(2, 1, [4], init_log_std=0.0)
    with torch.no_grad():
        actor.net[-1].bias.fill_(3.0)  # tanh(mean) = 0.995: most samples near the bound
    obs = torch.zeros(256, 2)
    actor(obs).sum().backward()
    assert actor.net[-1].bias.grad.abs().item() > 0  # a clamp would give zero gradient to half of them


def test_grad_truncation_cuts_only_exploding_envs():
    x = torch.ones(3, 2, requires_grad=True)
    gain = torch.tensor([[1.0], [1e9], [2.0]])
    trunc = GradTruncation(limit=1e3)
    s = x * gain
    trunc.watch(s)
    (s * gain).sum().backward()  # d/ds = gain: env 1's cotangent norm is 1.4e9
    torch.testing.assert_close(x.grad, torch.tensor([[1.0, 1.0], [0.0, 0.0], [4.0, 4.0]]))
    assert trunc.count == 1


def test_an_exploding_window_does_not_change_the_policy(monkeypatch):
    agent = _agent("mix", grad_truncation=1e-12)  # every state cotangent counts as exploding
    task = agent.env.task  # a reward of the state alone: every gradient passes through a state
    monkeypatch.setattr(task, "reward", lambda s, a, s2: -(s2[..., : task.dim] ** 2).sum(-1))
    before = [p.detach().clone() for p in agent.actor.parameters()]
    out = agent.iterate()
    assert out["truncated"] == agent.env.num_envs * agent.horizon
    for b, p in zip(before, agent.actor.parameters()):
        torch.testing.assert_close(b, p, rtol=0, atol=0)
    # the same window with the default bound trains
    agent = _agent("mix")
    before = [p.detach().clone() for p in agent.actor.parameters()]
    assert agent.iterate()["truncated"] == 0
    assert any((b - p).abs().max() > 0 for b, p in zip(before, agent.actor.parameters()))


def test_probes_drawn_under_an_old_normaliser_are_rescaled_to_the_current_one():
    torch.manual_seed(0)
    d, p, ds = 6, 4, 4
    J = torch.randn(ds, d)
    in_std = torch.tensor([0.01, 0.02, 1.0, 3.0, 0.5, 0.1])
    old = torch.randn(10, p, d) / math.sqrt(p)              # drawn with in_std = 1 (unfitted)
    new = torch.randn(10, p, d) * in_std / math.sqrt(p)     # drawn with the fitted normaliser
    for t_in in (old, new):
        t_out = torch.einsum("sd,bpd->bps", J, t_in)
        r_in, r_out = rescale_probes(t_in, t_out, in_std)
        energy = ((r_in / in_std) ** 2).sum(-1)
        torch.testing.assert_close(energy, torch.full_like(energy, d / p))  # every pair alike
        torch.testing.assert_close(r_out, torch.einsum("sd,bpd->bps", J, r_in))  # still J t
    # without the rescaling the old probes would outweigh the new ones by orders of magnitude
    assert ((old / in_std) ** 2).sum(-1).mean() > 100 * ((new / in_std) ** 2).sum(-1).mean()


def test_mbmix_rows_use_the_current_normaliser():
    agent = _agent("mbmix", full_jacobian_max_dim=0, num_probes=3)  # random probes, not full Jacobians
    for _ in range(3):
        agent.iterate()
    t_in, _ = agent._probe_batch(agent.buffer.sample(64))
    energy = ((t_in / agent.model.in_std) ** 2).sum(-1)
    torch.testing.assert_close(energy, torch.full_like(energy, (agent.env.state_dim + agent.env.act_dim) / 3))


def test_fig1_objective_is_the_real_window_plus_the_model_branches(monkeypatch):
    agent = _agent("mbmix", warmup_iterations=1)
    agent.iterate()  # warm-up: the model is fitted once
    seen = {}
    real, model = type(agent).collect_window, type(agent).model_window

    def spy_real(self):
        w, staged = real(self)
        seen["real"] = w
        return w, staged

    def spy_model(self, h):
        seen["model"] = model(self, h)
        return seen["model"]

    def spy_step(objective):
        seen["objective"] = objective.detach()
        # both parts reach the actor: through the simulator's VJP and through the model
        params = list(agent.actor.parameters())
        for part in ("real", "model"):
            w = seen[part]
            g = torch.autograd.grad(agent.objective(w), params, retain_graph=True, allow_unused=True)
            seen["grad_" + part] = sum(float(x.abs().sum()) for x in g if x is not None)
        return 0.0, 0.0

    monkeypatch.setattr(type(agent), "collect_window", spy_real)
    monkeypatch.setattr(type(agent), "model_window", spy_model)
    monkeypatch.setattr(agent, "actor_step", spy_step)
    agent.iterate()
    cfg = agent.cfg
    w_r, w_m = seen["real"], seen["model"]
    assert not w_r.dones.any()  # the 6-step window lies inside one 32-step episode
    # j_mix averages eq. 3 over the window's steps as episode starts; only t = 0 is a start here
    h_r, h_m = w_r.rewards.shape[0], w_m.rewards.shape[0]
    ref = (j_mix_direct(w_r.rewards, w_r.next_values, cfg.gamma, cfg.lam, cfg.mix_interval).mean() / h_r
           + j_mix_direct(w_m.rewards, w_m.next_values, cfg.gamma, cfg.lam, cfg.mix_interval).mean() / h_m)
    torch.testing.assert_close(seen["objective"], ref.detach(), rtol=1e-5, atol=1e-6)
    assert seen["grad_real"] > 0 and seen["grad_model"] > 0


def test_model_gradient_fidelity_is_one_for_a_perfect_model():
    agent = _agent("mbmix")
    agent.iterate()
    sim = agent.env.sim
    monkey = lambda s, a, member=None: sim.f(s, agent.env.task.control(a))  # noqa: E731
    agent.model_step = monkey
    cos = agent.gradient_fidelity(agent.env.get_state(), 4)
    assert len(cos) == 4
    for c in cos:
        assert c == pytest.approx(1.0, abs=1e-5)


def test_trajectory_optimisation_improves_a_cloth_return():
    from mbmix_taichi.learner.trajopt import optimise

    env = mt.make("cloth-fold", num_envs=2, seed=0, resolution=4, episode_length=8)
    out = optimise(env, iterations=8, lr=0.1)
    assert out["returns"][-1] > out["returns"][0] + 0.05, out["returns"]
    assert out["actions"].shape == (8, 2, env.act_dim) and out["actions"].abs().max() <= 1
    assert "score" in out and out["score"].shape == (2,)


@pytest.mark.parametrize("task,actor,critic,lrs,alpha,envs,iters", [
    ("cartpole-swingup", [64, 64], [64, 64], (1e-2, 1e-3), 0.2, 64, 500),
    ("hopper", [128, 64, 32], [64, 64], (2e-3, 2e-4), 0.2, 256, 2000),
    ("cheetah", [128, 64, 32], [64, 64], (2e-3, 2e-3), 0.2, 64, 2000),
    ("ant", [128, 64, 32], [64, 64], (2e-3, 2e-3), 0.2, 64, 2000),
    ("humanoid", [256, 128], [128, 128], (2e-3, 5e-4), 0.995, 64, 2000),
])
def test_shac_presets_are_diffrls(task, actor, critic, lrs, alpha, envs, iters):
    """The SHAC preset of each locomotion task is DiffRL's examples/cfg/shac/<task>.yaml."""
    cfg = resolve(task, "shac")
    assert (cfg.actor_hidden, cfg.critic_hidden, (cfg.actor_lr, cfg.critic_lr)) == (actor, critic, lrs)
    assert (cfg.target_critic_alpha, cfg.num_envs, cfg.iterations) == (alpha, envs, iters)
    assert (cfg.horizon, cfg.lam, cfg.critic_lambda, cfg.critic_iterations, cfg.critic_minibatches) == (32, 1.0, 0.95, 16, 4)
    assert (cfg.gamma, cfg.betas, cfg.grad_norm, cfg.lr_schedule) == (0.99, [0.7, 0.95], 1.0, "linear")
    assert cfg.critic_init == "orthogonal"
    mb = resolve(task, "mbmix")  # the paper's MB-MIX: few envs, lambda 0.98, same networks
    assert (mb.num_envs, mb.lam, mb.actor_hidden) == (8, 0.98, actor)


def test_linear_learning_rate_decay_reaches_1e_5():
    agent = _agent("shac", lr_schedule="linear", iterations=4, actor_lr=1e-3)
    lrs = []
    for _ in range(4):
        agent.iterate()
        lrs.append(agent.actor_opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-3 + (1e-5 - 1e-3) * 3 / 4)
    agent.iteration = 4
    agent.schedule()
    assert agent.actor_opt.param_groups[0]["lr"] == pytest.approx(1e-5)


def test_annealed_exploration_noise_follows_its_schedule_and_is_not_trained():
    agent = _agent("shac", log_std_schedule="linear", init_log_std=0.0, final_log_std=-2.0, iterations=4)
    stds = []
    for _ in range(4):
        agent.iterate()
        stds.append(agent.actor.log_std.detach().clone())
    # the value each iteration acted with is the schedule's, untouched by the actor's updates
    for i, s in enumerate(stds):
        torch.testing.assert_close(s, torch.full_like(s, -2.0 * i / 4))
    learned = _agent("shac", init_log_std=0.0, iterations=4)
    learned.iterate(), learned.iterate()
    assert not torch.equal(learned.actor.log_std.detach(), torch.zeros_like(learned.actor.log_std))


def test_critic_starts_orthogonal():
    from mbmix_taichi.learner.nets import Critic

    w = Critic(7, [16], orthogonal=True).net[0].weight
    torch.testing.assert_close(w.T @ w, 2.0 * torch.eye(7), rtol=1e-4, atol=1e-4)  # gain sqrt 2


def test_actor_head_scale_sets_the_initial_action_size():
    """actor_head_scale 0.01 (ours) starts the actor's head at a hundredth of PyTorch's default
    init with zero bias (near-zero actions); 1.0 keeps the default head, as DiffRL's actor."""
    from mbmix_taichi.learner.nets import Actor
    torch.manual_seed(0)
    big = Actor(11, 3, [128, 64, 32], head_scale=1.0)
    torch.manual_seed(0)
    small = Actor(11, 3, [128, 64, 32], head_scale=0.01)
    assert torch.allclose(small.net[-1].weight, 0.01 * big.net[-1].weight)
    assert float(small.net[-1].bias.abs().max()) == 0.0 and float(big.net[-1].bias.abs().max()) > 0.0
    obs = torch.randn(256, 11)
    assert float(small(obs, deterministic=True).abs().mean()) < 0.05 * float(big(obs, deterministic=True).abs().mean())
