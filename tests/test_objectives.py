"""J_mix (eq. 1-3, docs/method.md) and the critic targets of Algorithm 1 line 9."""
import pytest
import torch

from mbmix_taichi.learner.objectives import j_h_direct, j_mix, j_mix_direct, lambda_returns



def _data(h, b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(h, b, generator=g, dtype=torch.float64)
    v = torch.randn(h, b, generator=g, dtype=torch.float64)
    return r, v, torch.zeros(h, b, dtype=torch.bool)


@pytest.mark.parametrize("h", [1, 2, 3, 5, 6])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("lam", [0.0, 0.5, 0.98, 1.0])
def test_jmix_equals_weighted_sum_of_jh(h, k, lam):
    r, v, d = _data(h)
    gamma = 0.9
    R0 = lambda_returns(r, v, d, gamma, lam, k)[0]
    direct = j_mix_direct(r, v, gamma, lam, k)
    torch.testing.assert_close(R0, direct)
    torch.testing.assert_close(j_mix(r, v, d, gamma, lam, k), direct.sum() / (3 * h))


def test_lambda_one_is_svg_inf_and_zero_is_svg_one():
    h, gamma = 6, 0.95
    r, v, d = _data(h)
    disc = gamma ** torch.arange(h, dtype=torch.float64)
    # lam = 1: sum_t gamma^t r_t + gamma^h V(s_h) (SHAC's actor objective); with V = 0, SVG(inf)
    torch.testing.assert_close(lambda_returns(r, v, d, gamma, 1.0)[0], (disc[:, None] * r).sum(0) + gamma ** h * v[-1])
    torch.testing.assert_close(lambda_returns(r, torch.zeros_like(v), d, gamma, 1.0)[0], (disc[:, None] * r).sum(0))
    # lam = 0: SVG(1), r_0 + gamma V(s_1)
    torch.testing.assert_close(lambda_returns(r, v, d, gamma, 0.0)[0], r[0] + gamma * v[0])
    torch.testing.assert_close(j_h_direct(r, v, gamma, 1), r[0] + gamma * v[0])


def test_gradient_weights_are_eq3():
    """dJ_mix/dr_t = (gamma lam)^t and dJ_mix/dV(s_{t+1}) = (gamma lam)^t gamma (1 - lam) (eq. 3)."""
    h, gamma, lam = 7, 0.9, 0.8
    r, v, d = _data(h, b=1)
    r.requires_grad_(True)
    v.requires_grad_(True)
    lambda_returns(r, v, d, gamma, lam)[0].sum().backward()
    t = torch.arange(h, dtype=torch.float64)
    torch.testing.assert_close(r.grad[:, 0], (gamma * lam) ** t)
    want_v = (gamma * lam) ** t * gamma * (1 - lam)
    want_v[-1] = (gamma * lam) ** (h - 1) * gamma  # tail weight lam^(h-1) on J_h
    torch.testing.assert_close(v.grad[:, 0], want_v)


def test_critic_targets_are_line_9():
    h, gamma, lam = 6, 0.97, 0.9
    r, v, d = _data(h, b=2)
    R = lambda_returns(r, v, d, gamma, lam, 1)

    def G(t, K):
        return sum(gamma ** l * r[t + l] for l in range(K)) + gamma ** K * v[t + K - 1]

    for t in range(h):
        n = h - t
        want = (1 - lam) * sum(lam ** (K - 1) * G(t, K) for K in range(1, n)) + lam ** (n - 1) * G(t, n)
        torch.testing.assert_close(R[t], want)


def test_episode_end_stops_bootstrap_and_starts_new_objective():
    h, gamma, lam = 5, 0.9, 0.7
    r, v, d = _data(h, b=1)
    d[2] = True
    R = lambda_returns(r, v, d, gamma, lam)
    # the episode ended at step 2: R_2 bootstraps only from the given value of its final state
    torch.testing.assert_close(R[2], r[2] + gamma * v[2])
    # R_0 does not see rewards after the episode end
    r2 = r.clone()
    r2[3:] += 100.0
    torch.testing.assert_close(lambda_returns(r2, v, d, gamma, lam)[0], R[0])
    # the objective counts the window start and the new episode's start (step 3)
    torch.testing.assert_close(j_mix(r, v, d, gamma, lam), (R[0] + R[3]).sum() / h)
