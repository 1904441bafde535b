"""cloth-unfold: spread a folded cloth flat (DaXBench's Unfold-Cloth meaning).

Start: the cloth folded in half over x = x_mid, the fold a half-cylinder of random radius
4-12 mm, with 1 mm in-plane jitter (seeded). The pickers hold the corners of the folded
layer's free edge (the same material corners as in cloth-fold). Goal: the flat cloth.
"""
import torch

from ._cloth import ClothTask


class ClothUnfold(ClothTask):
    name = "cloth-unfold"
    description = "unfold a cloth folded in half back to flat with two pickers; `train` uses a 6 x 6 cloth and 30 steps (--task-option resolution=6 --task-option episode_length=30)"

    def _goal(self):
        return self.flat

    def _initial_positions(self, gen, n):
        radii = 0.004 + 0.008 * torch.rand(n, generator=gen, dtype=torch.float64)
        pos = self.model.positions
        x = torch.stack([torch.as_tensor(self._fold(pos, float(r)), dtype=self.flat.dtype) for r in radii])
        x[..., :2] += (torch.rand(x.shape[:-1] + (2,), generator=gen, dtype=x.dtype) - 0.5) * 2e-3
        return x.to(self.flat.device)
