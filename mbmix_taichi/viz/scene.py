"""Rollout rendering with pyvista (offscreen by default; EGL/OSMesa work without a display).

A task says what to draw through ``Task.render_spec()``, a dict with these keys (all optional;
functions take one state row, a numpy array ``[state_dim]``):

``meshes``
    list of ``{"vertices": fn(state) -> [V, 3], "faces": [F, 3] int, "color": "#rrggbb",
    "back_color": "#rrggbb" (underside; default a darker shade of ``color``),
    "show_edges": bool (default: True when the mesh has at most 4000 faces)}``.
    Drawn as a two-sided triangle mesh with smooth (per-vertex) normals recomputed every
    frame; front and back get different colours so folds are readable. ``"positions"`` is
    accepted as an alias of ``"vertices"``.
``spheres``
    list of ``{"centers": fn(state) -> [K, 3], "radius": float, "color": str}`` (e.g. pickers).
``geoms``
    ``fn(state) -> list of {"type": "sphere" | "capsule" | "box", "pos": [3], "rot": 3x3,
    "size": [r] | [radius, half_length along local z] | [hx, hy, hz], "color": str}``
    (rigid robots; one actor per geom, moved by its pose every frame).
``camera``
    ``{"position": [3], "focal_point": [3], "up": [3], "view_angle": deg,
    "follow": fn(state) -> [3]}``. Without ``follow`` position and focal point are world
    coordinates. With ``follow`` the camera translates with that point: position and focal
    point are then offsets from follow(state) (so ``focal_point: [0, 0, 0]`` keeps the
    followed point in the centre, whatever the reset distribution puts it).
    ``{"follow": fn, "offset": [3]}`` is short for position = offset, focal point = [0, 0, 0].
    Without a camera the view fits the first frame.
``ground``
    ``{"height": float, "size": float (default: 8 camera distances), "up": [3] (default: the
    camera's up, else +z), "spacing": grid spacing (default: a round number near size / 40),
    "color": str}``: a plane with grid lines; it follows the camera's follow point in steps
    of the grid spacing, so it looks endless.

One :class:`Scene` (one pyvista Plotter) serves every frame: mesh points are updated in
place and actors are moved, never re-created. Render code never looks at task names.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from ..errors import RenderError

BACKGROUND = "#dde3ea"
GROUND_COLOR = "#f2efe9"
GRID_COLOR = "#a9a49b"


# -- small helpers ------------------------------------------------------------------------

def _hex_to_rgb(color) -> np.ndarray:
    import pyvista as pv

    return np.asarray(pv.Color(color).float_rgb, dtype=float)


def _shade(color, factor: float):
    rgb = np.clip(_hex_to_rgb(color) * factor, 0, 1)
    return tuple(float(c) for c in rgb)


def _pv_faces(faces: np.ndarray) -> np.ndarray:
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    return np.hstack([np.full((len(faces), 1), 3, dtype=np.int64), faces]).ravel()


def _vertex_normals(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted per-vertex normals (unit length; zero-area spots get +z)."""
    tri = points[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = np.zeros_like(points)
    for k in range(3):
        for c in range(3):
            n[:, c] += np.bincount(faces[:, k], weights=fn[:, c], minlength=len(points))
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    out = np.where(norm > 1e-12, n / np.maximum(norm, 1e-12), np.array([0.0, 0.0, 1.0]))
    return out


def _as_points(x, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim == 1 and a.size % 3 == 0:
        a = a.reshape(-1, 3)
    if a.ndim != 2 or a.shape[1] != 3:
        raise RenderError(f"render_spec {what} returned shape {a.shape}; expected [K, 3]")
    return a


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=float)


def _round_number(x: float) -> float:
    """The nearest of 1, 2, 5 times a power of ten."""
    e = np.floor(np.log10(x))
    m = x / 10 ** e
    return float(min((1, 2, 5, 10), key=lambda c: abs(np.log(m / c))) * 10 ** e)


def _axis_frame(up: np.ndarray):
    """Two unit vectors spanning the plane orthogonal to ``up``."""
    up = up / np.linalg.norm(up)
    helper = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(up, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    return e1, e2


def has_display() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _prefer_egl() -> None:
    """Without a display, ask VTK (>= 9.4) for its EGL window directly instead of trying X first
    (which prints a 'bad X server connection' warning). A user's own choice wins."""
    if sys.platform.startswith("linux") and not has_display():
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


# -- the scene ----------------------------------------------------------------------------

class Scene:
    """One pyvista Plotter drawing a task's render spec; ``update(state)`` then ``frame()``."""

    def __init__(self, spec: dict, state: np.ndarray, width: int = 640, height: int = 480,
                 overlay: bool = True, off_screen: bool = True):
        _prefer_egl()
        import pyvista as pv

        self.pv = pv
        self.spec = spec or {}
        self.width, self.height = int(width), int(height)
        self.plotter = pv.Plotter(off_screen=off_screen, window_size=(self.width, self.height))
        self.plotter.set_background(BACKGROUND)
        self.plotter.enable_anti_aliasing("ssaa" if self.width * self.height <= 640 * 480 else "fxaa")
        self._meshes = []   # (polydata, vertices fn, faces)
        self._spheres = []  # (centers fn, radius, color, [actors])
        self._geom_actors = []
        self._geom_key = None
        self._ground = None
        self._text = None
        state = np.asarray(state, dtype=float)
        self._build_meshes(state)
        self._build_spheres(state)
        self._update_geoms(state)
        self._build_ground()
        if overlay:
            self._text = self.plotter.add_text(" ", position="upper_left", font_size=max(8, min(12, self.width // 55)),
                                               color="#202020", font="courier")
        self._setup_camera(state)
        self.new_episode(state)

    # meshes
    def _build_meshes(self, state):
        pv = self.pv
        for i, m in enumerate(self.spec.get("meshes", [])):
            fn = m.get("vertices", m.get("positions"))
            if fn is None or "faces" not in m:
                raise RenderError(f"render_spec meshes[{i}] needs 'vertices' (a function) and 'faces'")
            faces = np.asarray(m["faces"], dtype=np.int64).reshape(-1, 3)
            pts = _as_points(fn(state), f"meshes[{i}].vertices")
            poly = pv.PolyData(pts.copy(), faces=_pv_faces(faces))
            poly.point_data["Normals"] = _vertex_normals(pts, faces)
            poly.point_data.active_normals_name = "Normals"
            color = m.get("color", "#3a7bd5")
            back = m.get("back_color") or _shade(color, 0.55)
            show_edges = bool(m.get("show_edges", len(faces) <= 4000))
            # one edge colour serves both sides (VTK draws edges with the front property)
            edge = tuple(0.5 * (np.asarray(_shade(color, 0.7)) + np.asarray(_shade(back, 0.7))))
            actor = self.plotter.add_mesh(
                poly, color=color, show_edges=show_edges, edge_color=edge, line_width=0.5,
                backface_params={"color": back}, specular=0.15, specular_power=12, ambient=0.12,
                diffuse=0.85, smooth_shading=False, show_scalar_bar=False)
            actor.prop.interpolation = "phong"
            self._meshes.append((poly, fn, faces, i))

    def _update_meshes(self, state):
        for poly, fn, faces, i in self._meshes:
            pts = _as_points(fn(state), f"meshes[{i}].vertices")
            if pts.shape[0] != poly.n_points:
                raise RenderError(f"render_spec meshes[{i}] changed its vertex count")
            poly.points[:] = pts
            poly.point_data["Normals"][:] = _vertex_normals(pts, faces)
            poly.Modified()

    # spheres
    def _build_spheres(self, state):
        for i, s in enumerate(self.spec.get("spheres", [])):
            self._spheres.append([s["centers"], float(s.get("radius", 0.01)), s.get("color", "#d62728"), [], i])
        self._update_spheres(state)

    def _update_spheres(self, state):
        pv = self.pv
        for entry in self._spheres:
            fn, radius, color, actors, i = entry
            centers = _as_points(fn(state), f"spheres[{i}].centers")
            if len(actors) != len(centers):
                for a in actors:
                    self.plotter.remove_actor(a, render=False)
                src = pv.Sphere(radius=radius, theta_resolution=20, phi_resolution=20)
                actors[:] = [self.plotter.add_mesh(src, color=color, smooth_shading=True, specular=0.4,
                                                   render=False) for _ in centers]
            for a, c in zip(actors, centers):
                a.position = tuple(float(v) for v in c)

    # rigid geoms
    def _geom_mesh(self, g):
        pv = self.pv
        size = np.atleast_1d(np.asarray(g.get("size", [0.05]), dtype=float))
        kind = g.get("type")
        if kind == "sphere":
            return pv.Sphere(radius=size[0], theta_resolution=24, phi_resolution=24)
        if kind == "capsule":
            return pv.Capsule(center=(0, 0, 0), direction=(0, 0, 1), radius=size[0],
                              cylinder_length=2 * size[1], resolution=24)
        if kind == "box":
            hx, hy, hz = (size.tolist() * 3)[:3] if size.size == 1 else size[:3]
            return pv.Box(bounds=(-hx, hx, -hy, hy, -hz, hz))
        raise RenderError(f"render_spec geom type {kind!r} is not one of sphere, capsule, box")

    def _update_geoms(self, state):
        fn = self.spec.get("geoms")
        if fn is None:
            return
        geoms = fn(state)
        key = tuple((g.get("type"), tuple(np.atleast_1d(np.asarray(g.get("size", [0.05]), float)).round(9)),
                     str(g.get("color"))) for g in geoms)
        if key != self._geom_key:
            for a in self._geom_actors:
                self.plotter.remove_actor(a, render=False)
            self._geom_actors = [
                self.plotter.add_mesh(self._geom_mesh(g), color=g.get("color", "#c8843a"), smooth_shading=True,
                                      specular=0.3, render=False) for g in geoms]
            self._geom_key = key
        for a, g in zip(self._geom_actors, geoms):
            m = np.eye(4)
            m[:3, :3] = np.asarray(g.get("rot", np.eye(3)), dtype=float).reshape(3, 3)
            m[:3, 3] = np.asarray(g.get("pos", [0, 0, 0]), dtype=float).reshape(3)
            a.user_matrix = m

    # ground
    def _ground_up(self) -> np.ndarray:
        g = self.spec.get("ground", {})
        up = g.get("up") or self.spec.get("camera", {}).get("up") or [0, 0, 1]
        up = np.asarray(up, dtype=float)
        k = int(np.argmax(np.abs(up)))  # snap to the nearest axis
        axis = np.zeros(3)
        axis[k] = np.sign(up[k]) or 1.0
        return axis

    def _build_ground(self):
        g = self.spec.get("ground")
        if g is None:
            return
        pv = self.pv
        up = self._ground_up()
        cam = self.spec.get("camera") or {}
        if "size" in g:
            size = float(g["size"])
        elif "position" in cam or "offset" in cam:
            pos = np.asarray(cam.get("position", cam.get("offset")), float)
            size = 8.0 * max(1e-3, float(np.linalg.norm(pos - np.asarray(cam.get("focal_point", [0, 0, 0]), float))))
        else:
            size = 10.0
        spacing = float(g["spacing"]) if "spacing" in g else _round_number(size / 40)
        e1, e2 = _axis_frame(up)
        # drawn a little below the contact height, so that a cloth lying on the ground (or
        # sinking into it by the penalty contact's depth) hides the grid instead of z-fighting
        sink = float(g.get("visual_offset", 0.004 * size))
        center = up * (float(g.get("height", 0.0)) - 0.75 * sink)
        plane = pv.Plane(center=center - up * 0.25 * sink, direction=up, i_size=size, j_size=size)
        n = int(round(size / spacing))
        ticks = (np.arange(n + 1) - n / 2) * spacing
        half = size / 2
        lines = []
        for t in ticks:
            lines += [center + e1 * t - e2 * half, center + e1 * t + e2 * half,
                      center + e2 * t - e1 * half, center + e2 * t + e1 * half]
        grid = pv.line_segments_from_points(np.asarray(lines))
        a1 = self.plotter.add_mesh(plane, color=g.get("color", GROUND_COLOR), ambient=0.25, diffuse=0.75,
                                   specular=0.0, render=False)
        a2 = self.plotter.add_mesh(grid, color=GRID_COLOR, line_width=1, render=False)
        self._ground = (a1, a2, up, spacing)

    def _move_ground(self, offset):
        if self._ground is None:
            return
        a1, a2, up, spacing = self._ground
        flat = offset - up * np.dot(offset, up)
        snapped = np.round(flat / spacing) * spacing
        for a in (a1, a2):
            a.position = tuple(float(v) for v in snapped)

    # camera
    def _setup_camera(self, state):
        cam = self.spec.get("camera")
        if not cam or ("position" not in cam and "offset" not in cam):
            self.plotter.view_isometric()
            self.plotter.reset_camera()
            if cam and "up" in cam:
                self.plotter.camera.up = tuple(cam["up"])
            return
        if "view_angle" in cam:
            self.plotter.camera.view_angle = float(cam["view_angle"])
        if "up" in cam:
            self.plotter.camera.up = tuple(float(v) for v in cam["up"])

    def new_episode(self, state):
        """Start drawing a new episode (from its first state)."""
        self.update(state)

    def _update_camera(self, state):
        cam = self.spec.get("camera") or {}
        fn = cam.get("follow")
        p = None if fn is None else _as_points(fn(state), "camera.follow")[0]
        if "position" in cam:
            pos, focal = np.asarray(cam["position"], float), np.asarray(cam.get("focal_point", [0, 0, 0]), float)
        elif "offset" in cam:
            pos, focal = np.asarray(cam["offset"], float), np.zeros(3)
        else:
            return
        if p is not None:
            pos, focal = pos + p, focal + p
            self._move_ground(p)
        c = self.plotter.camera
        c.position = tuple(float(v) for v in pos)
        c.focal_point = tuple(float(v) for v in focal)
        if "up" in cam:
            c.up = tuple(float(v) for v in cam["up"])
        self.plotter.renderer.ResetCameraClippingRange()

    # per frame
    def update(self, state, text: str | None = None):
        state = np.asarray(state, dtype=float)
        self._update_meshes(state)
        self._update_spheres(state)
        self._update_geoms(state)
        self._update_camera(state)
        if self._text is not None and text is not None:
            self._text.SetText(2, text)  # a vtkCornerAnnotation; 2 = upper left

    def frame(self) -> np.ndarray:
        """The current picture, uint8 [height, width, 3]."""
        self.plotter.render()
        img = self.plotter.screenshot(return_img=True)
        return np.ascontiguousarray(img[..., :3])

    def close(self):
        try:
            self.plotter.close()
        except Exception:
            pass
