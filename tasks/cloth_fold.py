"""cloth-fold: fold a flat cloth in half (DaXBench's Fold-Cloth meaning, low-level picker control).

Start: the cloth lies flat, with small random wrinkles (heights up to 3 mm) and in-plane
jitter (1 mm), drawn from the env's seeded generator. Goal: the +x half folded over the line
x = x_mid onto the -x half. See tasks/_cloth.py for reward, score and options.
"""
import torch

from ._cloth import ClothTask


class ClothFold(ClothTask):
    name = "cloth-fold"
    description = "fold a flat cloth in half with two pickers holding the corners of one edge; `train` uses a 6 x 6 cloth and 30 steps (--task-option resolution=6 --task-option episode_length=30)"

    def _goal(self):
        return self.folded

    def _initial_positions(self, gen, n):
        x = self.flat.cpu()[None].repeat(n, 1, 1)
        x[..., :2] += (torch.rand(x.shape[:-1] + (2,), generator=gen, dtype=x.dtype) - 0.5) * 2e-3
        x[..., 2] += torch.rand(x.shape[:-1], generator=gen, dtype=x.dtype) * 3e-3
        return x.to(self.flat.device)
