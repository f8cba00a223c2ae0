"""A random scene: a posed person standing on a floor before a wall, furniture, a tilted camera.

World frame: X right (seen from the camera), Y up, Z towards the camera; the floor is Y = 0 and
the camera stands at (0, height, 0) looking along -Z, tilted towards the person. Everything is
handed to the renderer in the camera frame.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .body import PART_LABEL, PART_MIRROR, pose_body, rx, ry, rz, sample_pose, sample_shape
from .kinect import DEPTH_RANGE
from .render import Box, Camera, Plane, render

NONE, FLOOR, WALL, OBJECT = -1, -2, -3, -4  # background labels; body parts are >= 0
MARGIN = 0.02  # joints keep this fraction of the image width from the border
DISTANCE = (1.5, 4.5)  # person from the camera (metres)
LATERAL = 0.15  # sigma of the person's offset from the optical axis, in half image widths
GL_TO_CV = np.diag([1.0, -1.0, -1.0])  # camera axes (x right, y up, looking -z) -> OpenCV's
MIRROR = np.diag([-1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Scene:
    camera: Camera
    prims: tuple
    joints: dict  # joint name -> camera-frame position (3,)
    family: str

    def render(self, with_objects: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """True depth (inf = nothing hit) and labels; optionally the person and planes only."""
        prims = self.prims if with_objects else [p for p in self.prims if p.label != OBJECT]
        return render(self.camera, prims, NONE)

    def joints2d(self, names) -> np.ndarray:
        """Pixel coordinates (J, 2) of the named joints, in the given order."""
        missing = [n for n in names if n not in self.joints]
        if missing:
            raise ValueError(f"the body model has no joints {missing}; it has {sorted(self.joints)}")
        return self.camera.project(np.stack([self.joints[n] for n in names]))

    def mirrored(self) -> "Scene":
        """The scene reflected left-right in the camera frame (the person's left becomes right)."""
        zero = np.zeros(3)
        prims = tuple(replace(p.moved(MIRROR, zero), label=int(PART_MIRROR[p.label]))
                      if p.label >= 0 else p.moved(MIRROR, zero) for p in self.prims)
        swap = {"right_": "left_", "left_": "right_"}
        joints = {}
        for name, pos in self.joints.items():
            for a, b in swap.items():
                if name.startswith(a):
                    name = b + name[len(a):]
                    break
            joints[name] = MIRROR @ pos
        return replace(self, prims=prims, joints=joints)


def _box(centre, yaw, size, label=OBJECT) -> Box:
    return Box(np.asarray(centre, float), ry(yaw), np.asarray(size, float) / 2, label)


def _chair(x, z, yaw, seat_height, seat=0.45, back=0.45) -> list[Box]:
    """A solid seat block from the floor and a backrest behind it, facing +Z turned by yaw."""
    base = np.array([x, 0.0, z])
    rot = ry(yaw)
    return [_box(base + [0, seat_height / 2, 0], yaw, (seat, seat_height, seat)),
            _box(base + rot @ [0, seat_height + back / 2, -seat / 2], yaw, (seat, back, 0.05))]


def _corners(prims) -> np.ndarray:
    """Corners (8 per primitive) of the primitives' axis-aligned bounding boxes."""
    boxes = [p.bounds() for p in prims]
    return np.array([[(lo, hi)[i][0], (lo, hi)[j][1], (lo, hi)[k][2]]
                     for lo, hi in boxes for i in (0, 1) for j in (0, 1) for k in (0, 1)])


def _background(rng, x, dist, scenery) -> list:
    """Floor, often a back wall behind all `scenery`, and sometimes furniture along the wall."""
    prims = [Plane(np.array([0.0, 1.0, 0.0]), np.zeros(3), FLOOR)]
    if rng.random() < 0.9:
        wall_yaw = np.radians(rng.uniform(-25, 25))
        n = ry(wall_yaw) @ [0, 0, 1.0]
        p0 = np.array([x, 0, -min(dist + rng.uniform(0.3, 3.0), DEPTH_RANGE[1] - 0.5)])
        gap = (_corners(scenery) - p0) @ n  # distances in front of the wall
        p0 -= n * max(0.1 - gap.min(), 0)
        prims.append(Plane(n, p0, WALL))
        if gap.min() > 0.9:
            for _ in range(rng.integers(0, 3)):
                size = rng.uniform([0.3, 0.3, 0.2], [1.2, 1.8, 0.6])
                along = ry(wall_yaw) @ [rng.uniform(-2.5, 2.5), 0, 0]
                centre = p0 + along + n * (size[2] / 2 + 0.05) + [0, size[1] / 2, 0]
                prims.append(_box(centre, wall_yaw + np.radians(rng.uniform(-15, 15)), size))
    return prims


def _occluder(rng, x, person) -> list:
    """A box or a chair between the camera and the person (none if there is no room)."""
    yaw = np.radians(rng.uniform(-30, 30))
    if rng.random() < 0.6:
        size = rng.uniform([0.3, 0.4, 0.2], [0.9, 1.2, 0.6])
        prims = [_box([0, size[1] / 2, 0], yaw, size)]
    else:
        prims = _chair(0, 0, yaw + np.pi * rng.integers(0, 2), rng.uniform(0.4, 0.5))
    # the back of the object a little in front of the person's front
    z = _corners(person)[:, 2].max() + rng.uniform(0.2, 0.8) - _corners(prims)[:, 2].min()
    if z + _corners(prims)[:, 2].max() > -0.9:
        return []
    offset = np.array([x + rng.uniform(-0.5, 0.5), 0, z])
    return [p.moved(np.eye(3), offset) for p in prims]


def sample_scene(rng: np.random.Generator, camera: Camera, max_tries: int = 200) -> Scene:
    """Draw persons and placements until all joints project inside the image (with MARGIN)."""
    margin = MARGIN * camera.width
    up = np.array([0.0, 1.0, 0.0])
    for _ in range(max_tries):
        shape = sample_shape(rng)
        family, angles, yaw = sample_pose(rng)
        lean = rx(np.radians(rng.uniform(-6, 6))) @ rz(np.radians(rng.uniform(-6, 6)))
        joints, body = pose_body(shape, angles, ry(np.radians(yaw)) @ lean)
        lift = -min(p.lowest(up) for p in body)  # root height that puts the lowest point on the floor
        names = list(joints)
        pts = np.stack([joints[n] for n in names])
        mid = lift + (pts[:, 1].min() + pts[:, 1].max()) / 2
        for _ in range(5):
            dist = rng.uniform(*DISTANCE)
            x = np.clip(rng.normal(0, LATERAL), -0.9, 0.9) * dist * camera.cx / camera.fx
            cam_pos = np.array([0.0, rng.uniform(0.7, 1.6), 0.0])
            tilt = np.arctan2(cam_pos[1] - mid, dist) + np.radians(rng.uniform(-4, 4))
            to_cam = GL_TO_CV @ (rx(-tilt) @ rz(np.radians(rng.uniform(-3, 3)))).T
            root = np.array([x, lift, -dist])
            cam_pts = pts @ to_cam.T + to_cam @ (root - cam_pos)
            uv = camera.project(cam_pts)
            inside = ((uv >= margin) & (uv <= [camera.width - margin, camera.height - margin])).all()
            if inside and (cam_pts[:, 2] > DEPTH_RANGE[0]).all():
                break
        else:
            continue
        person = [p.moved(np.eye(3), root) for p in body]
        world = list(person)
        if family == "sitting":
            pelvis = next(p for p in person if p.label == PART_LABEL["pelvis"])
            seat = root + ry(np.radians(yaw)) @ [0, 0, 0.12]
            world += _chair(seat[0], seat[2], np.radians(yaw), pelvis.lowest(up))
        world += _background(rng, x, dist, world)
        if rng.random() < 0.2:
            world += _occluder(rng, x, person)
        shift = -to_cam @ cam_pos
        prims = tuple(p.moved(to_cam, shift) for p in world)
        return Scene(camera, prims, dict(zip(names, cam_pts)), family)
    raise RuntimeError(f"no sample fits the {camera.width}x{camera.height} image in {max_tries} tries")
