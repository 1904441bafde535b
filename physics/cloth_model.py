"""Cloth models: particles, triangles and springs, built on the CPU with numpy.

The builder output (`ClothModel`) is plain data; `physics.cloth.ClothSim` turns it into a
batched differentiable simulator. Two sources of cloth:

- `grid(nx, ny, spacing)`: a rectangular grid, springs as in Warp's cloth benchmark
  (stretch to the x-1 and y-1 neighbours, shear on both diagonals, bend to x-2 and y-2);
- `from_mesh(vertices, faces)` / `load_obj(path)`: any triangle mesh (stretch springs on the
  edges, bend springs between the two vertices opposite each interior edge); masses lumped
  from triangle areas.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import assets
from ..errors import MbmixError, OptionError


@dataclass
class ClothModel:
    positions: np.ndarray          # [n, 3] rest positions
    faces: np.ndarray              # [F, 3] int triangles (for rendering and chamfer goals)
    springs: np.ndarray            # [M, 2] int (i, j)
    rest: np.ndarray               # [M] rest lengths
    ke: np.ndarray                 # [M] stiffness
    kd: np.ndarray                 # [M] damping along the spring
    mass: np.ndarray               # [n] particle masses
    kind: np.ndarray = field(default=None)   # [M] 0 stretch, 1 shear, 2 bend

    @property
    def num_particles(self) -> int:
        return len(self.positions)

    @property
    def num_springs(self) -> int:
        return len(self.springs)


def _finish(pos, faces, springs, kind, ke, kd, mass) -> ClothModel:
    springs = np.asarray(springs, dtype=np.int64).reshape(-1, 2)
    kind = np.asarray(kind, dtype=np.int64)
    rest = np.linalg.norm(pos[springs[:, 0]] - pos[springs[:, 1]], axis=1)
    if (rest <= 0).any():
        raise MbmixError("cloth mesh has coincident vertices (a spring of zero rest length)")
    ke = np.asarray(ke, dtype=np.float64)[kind]
    kd = np.asarray(kd, dtype=np.float64)[kind]
    return ClothModel(positions=pos, faces=np.asarray(faces, dtype=np.int64), springs=springs, rest=rest,
                      ke=ke, kd=kd, mass=np.asarray(mass, dtype=np.float64), kind=kind)


def grid(nx: int, ny: int, spacing: float, ke=(1000.0, 1000.0, 1000.0), kd=(10.0, 10.0, 10.0),
         mass: float | None = None, total_mass: float | None = None, origin=(0.0, 0.0, 0.0)) -> ClothModel:
    """An nx x ny particle grid in the z = origin[2] plane; ke/kd are (stretch, shear, bend)."""
    if nx < 2 or ny < 2:
        raise MbmixError(f"a cloth grid needs at least 2 x 2 particles, got {nx} x {ny}")
    ix, iy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    idx = ix * ny + iy  # particle index of (x, y)
    pos = np.stack([ix.ravel() * spacing, iy.ravel() * spacing, np.zeros(nx * ny)], 1) + np.asarray(origin, float)
    springs, kinds = [], []

    def add(a, b, k):
        springs.append(np.stack([a.ravel(), b.ravel()], 1))
        kinds.append(np.full(a.size, k))

    add(idx[1:, :], idx[:-1, :], 0)            # stretch x-1
    add(idx[:, 1:], idx[:, :-1], 0)            # stretch y-1
    add(idx[1:, 1:], idx[:-1, :-1], 1)         # shear diagonal
    add(idx[1:, :-1], idx[:-1, 1:], 1)         # shear anti-diagonal
    if nx > 2:
        add(idx[2:, :], idx[:-2, :], 2)        # bend x-2
    if ny > 2:
        add(idx[:, 2:], idx[:, :-2], 2)        # bend y-2
    a, b, c = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    d = idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    n = nx * ny
    if mass is None:
        mass = (total_mass if total_mass is not None else 0.1 * n) / n
    return _finish(pos, faces, np.concatenate(springs), np.concatenate(kinds), ke, kd, np.full(n, float(mass)))


def from_mesh(vertices, faces, ke=(1000.0, 1000.0, 1000.0), kd=(10.0, 10.0, 10.0),
              total_mass: float = 0.1) -> ClothModel:
    """Cloth from a triangle mesh: stretch springs on edges, bend springs across interior edges
    (between the two opposite vertices); masses lumped from triangle areas."""
    pos = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if pos.ndim != 2 or pos.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise MbmixError("a cloth mesh needs vertices [n, 3] and triangle faces [F, 3]")
    if faces.min() < 0 or faces.max() >= len(pos):
        raise MbmixError("cloth mesh faces index vertices that do not exist")
    bad = np.flatnonzero(~np.isfinite(pos).all(1))
    if bad.size:
        raise OptionError(f"cloth mesh has NaN or Inf vertices (0-based {bad[:10].tolist()}); every vertex must be finite")
    area2 = np.linalg.norm(np.cross(pos[faces[:, 1]] - pos[faces[:, 0]], pos[faces[:, 2]] - pos[faces[:, 0]]), axis=1)
    scale = float(np.ptp(pos, axis=0).max()) ** 2
    degenerate = np.flatnonzero(area2 <= 1e-12 * max(scale, 1e-300))
    if degenerate.size:
        raise OptionError(f"cloth mesh has {degenerate.size} degenerate triangles of zero area (0-based faces "
                          f"{degenerate[:10].tolist()}: collinear or repeated vertices); expected proper triangles")
    edge_opp: dict = {}
    for f in faces:
        for e in range(3):
            a, b, o = f[e], f[(e + 1) % 3], f[(e + 2) % 3]
            edge_opp.setdefault((min(a, b), max(a, b)), []).append(o)
    springs, kinds = [], []
    for (a, b), opp in edge_opp.items():
        springs.append((a, b))
        kinds.append(0)
        if len(opp) == 2 and opp[0] != opp[1]:
            springs.append((opp[0], opp[1]))
            kinds.append(2)
    area = 0.5 * np.linalg.norm(np.cross(pos[faces[:, 1]] - pos[faces[:, 0]], pos[faces[:, 2]] - pos[faces[:, 0]]), axis=1)
    vmass = np.zeros(len(pos))
    np.add.at(vmass, faces.ravel(), np.repeat(area / 3.0, 3))
    if (vmass <= 0).any():
        raise MbmixError("cloth mesh has vertices that belong to no triangle of positive area")
    vmass *= total_mass / vmass.sum()
    return _finish(pos, faces, springs, kinds, ke, kd, vmass)


def load_obj(path, **kw) -> ClothModel:
    """Load an .obj triangle mesh with trimesh (flattened onto z = 0 by its own plane)."""
    import trimesh

    path = Path(path)
    if not path.exists():
        raise MbmixError(f"cloth mesh {str(path)!r} does not exist")
    try:  # unprocessed first: trimesh's processing silently drops NaN vertices
        raw = trimesh.load(path, force="mesh", process=False)
        v, f = np.asarray(raw.vertices, dtype=np.float64), np.asarray(raw.faces, dtype=np.int64)
    except Exception as exc:
        raise MbmixError(f"could not read cloth mesh {str(path)!r}: {exc}") from exc
    try:
        if len(f) == 0:
            raise OptionError("no triangles in it; expected an .obj triangle mesh")
        bad = np.flatnonzero(~np.isfinite(v).all(1))
        if bad.size:
            raise OptionError(f"vertices {(bad[:10] + 1).tolist()} (1-based, as in the file) are NaN or Inf; "
                              "every vertex must be finite")
        mesh = trimesh.Trimesh(v, f, process=True)  # merges the duplicate vertices of seams
        return from_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), **kw)
    except MbmixError as exc:
        raise OptionError(f"cloth mesh {str(path)!r}: {exc}") from None


def check_flat(positions, faces, name: str) -> None:
    """The cloth tasks lay a mesh flat by dropping z: refuse a mesh that this collapses (e.g. one
    standing in the x-z plane), naming it."""
    p = np.asarray(positions, dtype=np.float64)
    f = np.asarray(faces)
    e1, e2 = p[f[:, 1]] - p[f[:, 0]], p[f[:, 2]] - p[f[:, 0]]
    flat = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    full = np.linalg.norm(np.cross(e1, e2), axis=1)
    collapsed = np.flatnonzero(flat <= 1e-3 * full)
    if collapsed.size:
        raise OptionError(f"cloth mesh {name!r} does not lie in the x-y plane: laying it flat (z = 0) collapses "
                          f"{collapsed.size} of its {len(f)} triangles; expected a flat mesh in the x-y plane")


def check_pickers(held, name: str) -> None:
    """The two pickers must hold disjoint, non-empty particle sets (the +x edge's two corners)."""
    sets = [set(np.asarray(h).tolist()) for h in held]
    if any(not s for s in sets) or any(sets[i] & sets[j] for i in range(len(sets)) for j in range(i)):
        raise OptionError(
            f"cloth {name!r}: the pickers cannot be placed: the corners of its +x edge (the right-most vertices of "
            f"its bottom and top 15%) are within two particle spacings of each other, so both pickers would hold "
            f"the same particles {sorted(set.intersection(*sets))[:10]}; expected a cloth with two distinct "
            "corners on its +x edge (a grid of resolution >= 4, or a rectangle- or shirt-like mesh)")


def asset_path(name: str) -> Path:
    """Path of a bundled asset (``"tshirt"`` -> .../assets/tshirt.obj) or of a user's file."""
    p = Path(name)
    if p.suffix and p.exists():
        return p
    found = assets.path(name, ".obj")
    if found is None:
        raise MbmixError(f"no cloth mesh {name!r}; bundled meshes: {', '.join(assets.names('.obj')) or 'none'}; "
                         "or pass a path to an .obj")
    return found
