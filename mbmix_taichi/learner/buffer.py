"""D_env: a ring buffer of real transitions with their derivative data (Algorithm 1, line 1).

Each row holds s, a (clamped to [-1, 1], as the simulator sees it), s', and the Jacobian
information of that step: either the full Jacobian (as its transpose, the responses to the
identity probes) or P random probe/response pairs (t_in, J t_in); MB-MIX's adjoint pairs
(w, w^T J) live in a buffer of their own. Probe and adjoint pairs are stored in
bfloat16 (3 significant digits, float32's range): they are Sobolev *targets* whose rounding
(~4e-3 relative) is far below the model's Jacobian error, and they are 80% of a row, so the
buffer (and a checkpoint, which must hold it for an exact resume) is about half the size.
"""
from __future__ import annotations

import torch


#: storage dtype per key (others keep the dtype they arrive in); `sample` returns float32/64
COMPACT = {"t_in": torch.bfloat16, "t_out": torch.bfloat16, "w": torch.bfloat16, "wj": torch.bfloat16}


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
            self.data = {k: torch.zeros((self.capacity, *v.shape[1:]), dtype=COMPACT.get(k, v.dtype))
                         for k, v in rows.items()}
            self.dtypes = {k: v.dtype for k, v in rows.items()}
        idx = (self.ptr + torch.arange(n)) % self.capacity
        for k, v in rows.items():
            self.data[k][idx] = v.detach().to(self.data[k].dtype)
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.capacity, self.size + n)

    def sample(self, n: int, keys=None) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, self.size, (n,))
        return {k: v[idx].to(self.dtypes[k]) for k, v in self.data.items() if keys is None or k in keys}

    def all(self, key: str) -> torch.Tensor:
        return self.data[key][: self.size]

    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "ptr": self.ptr, "size": self.size,
                "dtypes": {k: str(v).removeprefix("torch.") for k, v in getattr(self, "dtypes", {}).items()},
                "data": {k: v[: self.size].clone() for k, v in self.data.items()}}

    def load_state_dict(self, d: dict) -> None:
        self.capacity, self.ptr, self.size = d["capacity"], d["ptr"], d["size"]
        self.data = {}
        names = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}
        self.dtypes = {k: names[v] for k, v in d.get("dtypes", {}).items()}
        for k, v in d["data"].items():
            full = torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype)
            full[: self.size] = v
            self.data[k] = full
