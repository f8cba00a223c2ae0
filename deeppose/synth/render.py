"""Ray casting of capsules, ellipsoids, boxes and planes into a z-buffer (vectorised numpy).

Camera frame (OpenCV): x right, y down, z forward; the camera sits at the origin. A pixel
(row v, column u) casts the ray ``t * ((u + 0.5 - cx) / fx, (v + 0.5 - cy) / fy, 1)``, so the
ray parameter ``t`` of a hit is its depth z, as a depth camera measures it. Each primitive is
intersected only inside the image window of its projected bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics in continuous pixel coordinates (pixel u covers [u, u + 1))."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @cached_property
    def ray_x(self) -> np.ndarray:
        return (np.arange(self.width) + 0.5 - self.cx) / self.fx

    @cached_property
    def ray_y(self) -> np.ndarray:
        return (np.arange(self.height) + 0.5 - self.cy) / self.fy

    @cached_property
    def ray_x32(self) -> np.ndarray:
        return self.ray_x.astype(np.float32)

    @cached_property
    def ray_y32(self) -> np.ndarray:
        return self.ray_y.astype(np.float32)

    def project(self, points: np.ndarray) -> np.ndarray:
        """Camera-frame points (..., 3) -> pixel coordinates (..., 2)."""
        p = np.asarray(points, dtype=float)
        return np.stack([self.fx * p[..., 0] / p[..., 2] + self.cx,
                         self.fy * p[..., 1] / p[..., 2] + self.cy], axis=-1)

    def window(self, lo: np.ndarray, hi: np.ndarray):
        """Row and column slices covering the projection of the box [lo, hi] (None if unseen)."""
        if hi[2] <= 0:
            return None
        zs = np.array([max(lo[2], 1e-6), hi[2]])
        us = self.fx * np.array([lo[0], hi[0]])[:, None] / zs + self.cx
        vs = self.fy * np.array([lo[1], hi[1]])[:, None] / zs + self.cy
        u0, u1 = max(int(np.floor(us.min())), 0), min(int(np.ceil(us.max())) + 1, self.width)
        v0, v1 = max(int(np.floor(vs.min())), 0), min(int(np.ceil(vs.max())) + 1, self.height)
        if u0 >= u1 or v0 >= v1:
            return None
        return slice(v0, v1), slice(u0, u1)


def _nearest_root(half_b, a, c):
    """Smaller root t of a t^2 + 2 half_b t + c = 0 (inf where there is none)."""
    disc = half_b * half_b - a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (-half_b - np.sqrt(disc)) / a
    return np.where(disc >= 0, t, np.inf)


@dataclass(frozen=True)
class Capsule:
    """Segment a-b swept by a sphere of radius r."""

    a: np.ndarray
    b: np.ndarray
    r: float
    label: int

    def moved(self, m: np.ndarray, t: np.ndarray) -> "Capsule":
        return replace(self, a=m @ self.a + t, b=m @ self.b + t)

    def bounds(self):
        return np.minimum(self.a, self.b) - self.r, np.maximum(self.a, self.b) + self.r

    def lowest(self, up: np.ndarray) -> float:
        return min(up @ self.a, up @ self.b) - self.r

    def intersect(self, dx, dy):
        axis = self.b - self.a
        length = float(np.linalg.norm(axis))
        n = axis / length
        oa = -self.a  # ray origin relative to a
        dd = dx * dx + dy * dy + 1.0
        dn = dx * n[0] + dy * n[1] + n[2]
        do = dx * oa[0] + dy * oa[1] + oa[2]
        on = oa @ n
        oo = oa @ oa
        r2 = self.r * self.r
        t_cyl = _nearest_root(do - dn * on, dd - dn * dn, oo - on * on - r2)
        s = on + t_cyl * dn
        t_cyl = np.where((s >= 0) & (s <= length), t_cyl, np.inf)
        t_a = _nearest_root(do, dd, oo - r2)
        t_b = _nearest_root(do - length * dn, dd, oo - 2 * length * on + length * length - r2)
        return np.minimum(np.minimum(t_cyl, t_a), t_b)


@dataclass(frozen=True)
class Ellipsoid:
    """Centre c, orthonormal axes (columns of rot) and semi-axis lengths."""

    c: np.ndarray
    rot: np.ndarray
    semi: np.ndarray
    label: int

    def moved(self, m: np.ndarray, t: np.ndarray) -> "Ellipsoid":
        return replace(self, c=m @ self.c + t, rot=m @ self.rot)

    def _extent(self) -> np.ndarray:
        return np.sqrt(((self.rot * self.semi) ** 2).sum(axis=1))

    def bounds(self):
        e = self._extent()
        return self.c - e, self.c + e

    def lowest(self, up: np.ndarray) -> float:
        return up @ self.c - float(np.linalg.norm((up @ self.rot) * self.semi))

    def intersect(self, dx, dy):
        m = self.rot.T / self.semi[:, None]  # world direction -> unit-sphere frame
        o = m @ -self.c
        d = [dx * m[k, 0] + dy * m[k, 1] + m[k, 2] for k in range(3)]
        a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
        half_b = d[0] * o[0] + d[1] * o[1] + d[2] * o[2]
        return _nearest_root(half_b, a, o @ o - 1.0)


@dataclass(frozen=True)
class Box:
    """Oriented box: centre c, axes (columns of rot), half extents."""

    c: np.ndarray
    rot: np.ndarray
    half: np.ndarray
    label: int

    def moved(self, m: np.ndarray, t: np.ndarray) -> "Box":
        return replace(self, c=m @ self.c + t, rot=m @ self.rot)

    def bounds(self):
        e = np.abs(self.rot) @ self.half
        return self.c - e, self.c + e

    def intersect(self, dx, dy):
        o = self.rot.T @ -self.c
        near, far = -np.inf, np.inf
        with np.errstate(divide="ignore", invalid="ignore"):
            for k in range(3):
                d = dx * self.rot[0, k] + dy * self.rot[1, k] + self.rot[2, k]
                t1 = (-self.half[k] - o[k]) / d
                t2 = (self.half[k] - o[k]) / d
                near = np.maximum(near, np.minimum(t1, t2))
                far = np.minimum(far, np.maximum(t1, t2))
        return np.where((near <= far) & (near > 0), near, np.inf)


@dataclass(frozen=True)
class Plane:
    """Infinite plane through point p with normal n."""

    n: np.ndarray
    p: np.ndarray
    label: int

    def moved(self, m: np.ndarray, t: np.ndarray) -> "Plane":
        return replace(self, n=m @ self.n, p=m @ self.p + t)

    def intersect(self, dx, dy):
        nx, ny, nz = (float(v) for v in self.n)  # Python floats keep float32 rays float32
        with np.errstate(divide="ignore"):
            t = float(self.n @ self.p) / (dx * nx + (dy * ny + nz))
        t[t <= 0] = np.inf
        return t


@dataclass
class ZBuffer:
    """Depth (inf = nothing hit) and the label of the nearest primitive (`none_label`)."""

    camera: Camera
    none_label: int
    depth: np.ndarray = field(init=False)
    labels: np.ndarray = field(init=False)

    def __post_init__(self):
        shape = (self.camera.height, self.camera.width)
        self.depth = np.full(shape, np.inf, dtype=np.float32)
        self.labels = np.full(shape, self.none_label, dtype=np.int8)

    def draw(self, prim) -> None:
        cam = self.camera
        if isinstance(prim, Plane):  # the whole image, in single precision
            rows, cols = slice(None), slice(None)
            t = prim.intersect(cam.ray_x32[None, :], cam.ray_y32[:, None])
        else:
            window = cam.window(*prim.bounds())
            if window is None:
                return
            rows, cols = window
            t = prim.intersect(cam.ray_x[cols][None, :], cam.ray_y[rows][:, None])
        zb = self.depth[rows, cols]
        closer = t < zb
        np.copyto(zb, t, where=closer, casting="same_kind")
        np.copyto(self.labels[rows, cols], prim.label, where=closer)


def render(camera: Camera, prims, none_label: int) -> tuple[np.ndarray, np.ndarray]:
    """Depth (float32 metres, inf where nothing is hit) and int8 labels of the primitives."""
    zb = ZBuffer(camera, none_label)
    for prim in prims:
        zb.draw(prim)
    return zb.depth, zb.labels
