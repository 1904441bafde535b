"""Generate ``assets/tshirt.obj``: a flat T-shirt outline, triangulated with near-uniform triangles.

The cloth lies in the z = 0 plane (x across the sleeves, y from hem to collar), is about
0.30 m wide, centred at the origin, with faces wound counter-clockwise (normals +z).

Method: resample the outline at spacing ``h``, fill the inside with a triangular lattice
(points closer than 0.6 h to the outline dropped), Delaunay-triangulate, keep the triangles
whose centroid lies inside the outline, relax the inner points (Laplacian smoothing) and
triangulate again. Needs numpy, scipy and trimesh. Run it on its own:

    python tools/make_tshirt_mesh.py [--spacing 0.0155] [--out assets/tshirt.obj]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

# right half of the outline (x >= 0), from the collar's centre clockwise to the hem's centre
HALF_OUTLINE = [
    (0.000, 0.115),   # collar dip, centre front
    (0.022, 0.122),
    (0.038, 0.138),   # neck corner
    (0.090, 0.122),   # shoulder
    (0.150, 0.058),   # sleeve top, outer
    (0.124, 0.024),   # cuff bottom
    (0.086, 0.056),   # armpit
    (0.084, -0.132),  # hem corner
    (0.000, -0.132),  # hem centre
]


def outline() -> np.ndarray:
    """The closed outline, counter-clockwise, without the repeated first point."""
    right = np.array(HALF_OUTLINE)
    left = right[-2:0:-1] * np.array([-1.0, 1.0])  # mirror, without the two points on x = 0
    poly = np.concatenate([right, left])
    area2 = np.sum(poly[:, 0] * np.roll(poly[:, 1], -1) - np.roll(poly[:, 0], -1) * poly[:, 1])
    return poly if area2 > 0 else poly[::-1].copy()


def resample(poly: np.ndarray, h: float) -> np.ndarray:
    pts = []
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / h)))
        t = np.arange(n)[:, None] / n
        pts.append(a + t * (b - a))
    return np.concatenate(pts)


def inside(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd ray casting."""
    x, y = points[:, 0:1], points[:, 1:2]
    a, b = poly[None, :, :], np.roll(poly, -1, axis=0)[None, :, :]
    ya, yb = a[..., 1], b[..., 1]
    crosses = (ya > y) != (yb > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = a[..., 0] + (y - ya) * (b[..., 0] - a[..., 0]) / (yb - ya)
    return np.sum(crosses & (x < xint), axis=1) % 2 == 1


def dist_to_outline(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    a, b = poly[None], np.roll(poly, -1, axis=0)[None]
    p = points[:, None, :]
    ab = b - a
    t = np.clip(np.sum((p - a) * ab, -1) / np.sum(ab * ab, -1), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1).min(1)


def triangulate(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    from scipy.spatial import Delaunay

    faces = Delaunay(points).simplices
    tri = points[faces]
    keep = inside(tri.mean(1), poly)
    # also reject triangles bridging a concave corner (an edge midpoint outside)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        mid = 0.5 * (tri[:, i] + tri[:, j])
        keep &= inside(mid, poly) | (dist_to_outline(mid, poly) < 1e-9)
    faces = faces[keep]
    e1, e2 = points[faces[:, 1]] - points[faces[:, 0]], points[faces[:, 2]] - points[faces[:, 0]]
    cross = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    faces = np.where((cross < 0)[:, None], faces[:, [0, 2, 1]], faces)  # counter-clockwise
    return faces[np.abs(cross) > 1e-12]


def build(h: float = 0.0155, relax: int = 8):
    poly = outline()
    boundary = resample(poly, h)
    dy = h * np.sqrt(3) / 2
    lo, hi = poly.min(0), poly.max(0)
    rows = []
    for k, y in enumerate(np.arange(lo[1], hi[1] + dy, dy)):
        xs = np.arange(lo[0] + (h / 2 if k % 2 else 0.0), hi[0] + h, h)
        rows.append(np.stack([xs, np.full_like(xs, y)], 1))
    lattice = np.concatenate(rows)
    lattice = lattice[inside(lattice, poly)]
    lattice = lattice[dist_to_outline(lattice, poly) > 0.6 * h]
    nb = len(boundary)
    points = np.concatenate([boundary, lattice])
    faces = triangulate(points, poly)
    for _ in range(relax):  # Laplacian smoothing of the inner points, boundary fixed
        acc = np.zeros_like(points)
        cnt = np.zeros(len(points))
        for i, j in ((0, 1), (1, 2), (2, 0)):
            np.add.at(acc, faces[:, i], points[faces[:, j]])
            np.add.at(cnt, faces[:, i], 1)
            np.add.at(acc, faces[:, j], points[faces[:, i]])
            np.add.at(cnt, faces[:, j], 1)
        new = acc / np.maximum(cnt, 1)[:, None]
        points[nb:] = 0.5 * points[nb:] + 0.5 * new[nb:]
        faces = triangulate(points, poly)
    used = np.unique(faces)
    remap = -np.ones(len(points), dtype=np.int64)
    remap[used] = np.arange(len(used))
    points, faces = points[used], remap[faces]
    points = points - 0.5 * (points.min(0) + points.max(0))  # bounding box centred at the origin
    vertices = np.concatenate([points, np.zeros((len(points), 1))], 1)
    return vertices, faces


def check(vertices: np.ndarray, faces: np.ndarray) -> dict:
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    edges = np.sort(mesh.edges, axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    tri = vertices[faces]
    lengths = np.linalg.norm(tri - np.roll(tri, -1, axis=1), axis=-1)
    angles = np.degrees(mesh.face_angles)
    info = {
        "vertices": len(vertices), "faces": len(faces),
        "components": len(mesh.split(only_watertight=False)),
        "euler": len(vertices) - len(counts) + len(faces),
        "max_edge_use": int(counts.max()),
        "width": float(np.ptp(vertices[:, 0])), "height": float(np.ptp(vertices[:, 1])),
        "edge_min/mean/max": (float(lengths.min()), float(lengths.mean()), float(lengths.max())),
        "min_angle_deg": float(angles.min()),
        "normals_up": bool((mesh.face_normals[:, 2] > 0.99).all()),
    }
    assert info["components"] == 1 and info["euler"] == 1 and info["max_edge_use"] <= 2, info
    assert info["normals_up"], info
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spacing", type=float, default=0.0155, help="target edge length (m)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "assets" / "tshirt.obj"))
    args = ap.parse_args()
    import trimesh

    vertices, faces = build(args.spacing)
    info = check(vertices, faces)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    header = "tshirt outline, z = 0 plane, metres; made by tools/make_tshirt_mesh.py"
    text = trimesh.exchange.obj.export_obj(mesh, include_normals=False, include_texture=False, header=header)
    Path(args.out).write_text(text)
    for k, v in info.items():
        print(f"{k}: {v}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
