"""D_env: a ring buffer of real transitions with their derivative data (Algorithm 1, line 1).

Each row holds s, a (clamped to [-1, 1], as the simulator sees it), s', and the Jacobian
information of that step: either the full Jacobian (as its transpose, the responses to the
identity probes) or P random probe/response pairs (t_in, J t_in).
"""
from __future__ import annotations

import torch


class ReplayBuffer:
    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.data: dict[str, torch.Tensor] = {}
        self.ptr = 0
        self.size = 0

    def add(self, **rows: torch.Tensor) -> None:
        n = next(iter(rows.values())).shape[0]
        if n == 0:
            return
        if not self.data:
            self.data = {k: torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype) for k, v in rows.items()}
        idx = (self.ptr + torch.arange(n)) % self.capacity
        for k, v in rows.items():
            self.data[k][idx] = v.detach().to(self.data[k].dtype)
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.capacity, self.size + n)

    def sample(self, n: int, keys=None) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, self.size, (n,))
        return {k: v[idx] for k, v in self.data.items() if keys is None or k in keys}

    def all(self, key: str) -> torch.Tensor:
        return self.data[key][: self.size]

    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "ptr": self.ptr, "size": self.size,
                "data": {k: v[: self.size].clone() for k, v in self.data.items()}}

    def load_state_dict(self, d: dict) -> None:
        self.capacity, self.ptr, self.size = d["capacity"], d["ptr"], d["size"]
        self.data = {}
        for k, v in d["data"].items():
            full = torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype)
            full[: self.size] = v
            self.data[k] = full
