"""A human body: size, joint angles by pose family, forward kinematics to capsules and ellipsoids.

Body frame: X = the person's left, Y = up, Z = forward (right-handed); the root is the pelvis
centre, midway between the hip joints. Lengths in metres, angles in degrees where sampled.
Proportions are fractions of the standing height (after Drillis & Contini's segment table),
jittered per person; radii scale with a girth factor, the head with a child-to-adult factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .render import Capsule, Ellipsoid

SIDES = (("right", -1.0), ("left", 1.0))  # sign of the side's X
SEGMENTS = ("upper_arm", "forearm", "hand", "thigh", "shin", "foot")
PARTS = ("head", "neck", "chest", "abdomen", "pelvis", "shoulders") + tuple(
    f"{side}_{seg}" for side, _ in SIDES for seg in SEGMENTS)
PART_LABEL = {name: i for i, name in enumerate(PARTS)}
PART_MIRROR = np.array([PARTS.index(p.replace("right_", "@").replace("left_", "right_")
                                    .replace("@", "left_")) for p in PARTS])

# lengths as fractions of the height
LENGTH = dict(trunk=0.300, hip_half=0.052, shoulder_half=0.103, shoulder_drop=0.025,
              neck=0.050, upper_arm=0.172, forearm=0.150, hand=0.050, thigh=0.245, shin=0.246)
# capsule radii as fractions of the height (times girth)
RADIUS = dict(neck=0.030, shoulders=0.032, upper_arm=0.026, forearm=0.020, thigh=0.045, shin=0.030)
# ellipsoid semi-axes (x, y, z) in their part frame as fractions of the height
SEMI = dict(head=(0.048, 0.064, 0.057), chest=(0.095, 0.110, 0.060), abdomen=(0.085, 0.090, 0.058),
            pelvis=(0.100, 0.065, 0.062), hand=(0.024, 0.050, 0.012), foot=(0.025, 0.022, 0.075))

# joint limits (degrees)
LIMITS = dict(trunk_bend=(-25, 90), trunk_lateral=(-30, 30), trunk_twist=(-45, 45),
              head_nod=(-40, 50), head_turn=(-70, 70), head_tilt=(-35, 35),
              shoulder_flex=(-50, 180), shoulder_abd=(-20, 180), shoulder_rot=(-60, 100),
              elbow=(0, 150), hip_flex=(-25, 130), hip_abd=(-20, 45), hip_rot=(-35, 40),
              knee=(0, 150), ankle=(-20, 45))


def rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def ry(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rz(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


@dataclass(frozen=True)
class Shape:
    height: float
    girth: float
    head_scale: float
    length: dict  # metres, per LENGTH key


def sample_shape(rng: np.random.Generator) -> Shape:
    """Children (1.1-1.5 m) one time in five, otherwise adults around 1.72 m (1.45-2.0 m)."""
    if rng.random() < 0.2:
        height, girth = rng.uniform(1.1, 1.5), rng.uniform(0.85, 1.1)
    else:
        height, girth = float(np.clip(rng.normal(1.72, 0.09), 1.45, 2.0)), rng.uniform(0.85, 1.3)
    jitter = rng.uniform(0.94, 1.06, len(LENGTH))
    length = {k: f * height * j for (k, f), j in zip(LENGTH.items(), jitter)}
    return Shape(height, girth, (1.75 / height) ** 0.6, length)


def _base(u):
    """A relaxed standing pose; the families below override parts of it."""
    a = dict(trunk_bend=u(-5, 10), trunk_lateral=u(-8, 8), trunk_twist=u(-10, 10),
             head_nod=u(-15, 20), head_turn=u(-30, 30), head_tilt=u(-10, 10))
    for side, _ in SIDES:
        a.update({f"{side}_shoulder_flex": u(-15, 25), f"{side}_shoulder_abd": u(3, 25),
                  f"{side}_shoulder_rot": u(-20, 40), f"{side}_elbow": u(5, 40),
                  f"{side}_hip_flex": u(-5, 10), f"{side}_hip_abd": u(0, 12),
                  f"{side}_hip_rot": u(-10, 20), f"{side}_knee": u(0, 12), f"{side}_ankle": u(-5, 10)})
    return a


def _set(a, side, **kw):
    a.update({f"{side}_{k}": v for k, v in kw.items()})


def _walking(u, rng, a):
    front, back = ("right", "left") if rng.random() < 0.5 else ("left", "right")
    _set(a, front, hip_flex=u(10, 35), knee=u(0, 25), shoulder_flex=u(-35, -5), elbow=u(10, 45))
    _set(a, back, hip_flex=u(-20, -5), knee=u(10, 60), ankle=u(10, 30), shoulder_flex=u(10, 40),
         elbow=u(10, 45))


def _arms_raised(u, rng, a):
    modes = rng.integers(0, 3, 2)
    if not modes.any():
        modes[rng.integers(0, 2)] = 1 + rng.integers(0, 2)
    for (side, _), mode in zip(SIDES, modes):
        if mode == 1:  # sideways
            _set(a, side, shoulder_abd=u(60, 180), shoulder_flex=u(-10, 40), elbow=u(0, 110))
        elif mode == 2:  # forwards
            _set(a, side, shoulder_flex=u(60, 180), shoulder_abd=u(0, 40), elbow=u(0, 110))


def _bending(u, rng, a):
    bend = u(25, 90)
    a.update(trunk_bend=bend, trunk_lateral=u(-15, 15))
    for side, _ in SIDES:
        _set(a, side, shoulder_flex=bend + u(-25, 30), shoulder_abd=u(0, 25), elbow=u(0, 60),
             knee=u(0, 25), hip_flex=u(0, 20))


def _sitting(u, rng, a):
    a.update(trunk_bend=u(-15, 20))
    for side, _ in SIDES:
        _set(a, side, hip_flex=u(70, 100), knee=u(70, 110), hip_abd=u(0, 20), ankle=u(-10, 15),
             shoulder_flex=u(0, 45), shoulder_abd=u(0, 20), shoulder_rot=u(0, 40), elbow=u(30, 100))


def _crouching(u, rng, a):
    a.update(trunk_bend=u(15, 50))
    for side, _ in SIDES:
        _set(a, side, hip_flex=u(95, 130), knee=u(105, 145), hip_abd=u(5, 30), hip_rot=u(0, 30),
             shoulder_flex=u(20, 80), elbow=u(10, 90))


def _arms_crossed(u, rng, a):
    for side, _ in SIDES:
        _set(a, side, shoulder_flex=u(20, 50), shoulder_abd=u(0, 15), shoulder_rot=u(70, 100),
             elbow=u(90, 135))


def _side_view(u, rng, a):
    [_walking, _arms_raised, lambda *_: None][rng.integers(0, 3)](u, rng, a)


# family -> (weight, modifier of the base pose, yaw range in degrees; a side view is
# mirrored to negative yaw half of the time)
FAMILIES = dict(
    standing=(0.18, lambda *_: None, (-90, 90)),
    walking=(0.15, _walking, (-90, 90)),
    arms_raised=(0.15, _arms_raised, (-90, 90)),
    bending=(0.10, _bending, (-90, 90)),
    sitting=(0.10, _sitting, (-90, 90)),
    crouching=(0.08, _crouching, (-90, 90)),
    arms_crossed=(0.12, _arms_crossed, (-90, 90)),
    side_view=(0.12, _side_view, (60, 90)),
)


def sample_pose(rng: np.random.Generator) -> tuple[str, dict, float]:
    """(family, joint angles in degrees clipped to LIMITS, yaw in degrees; 0 faces the camera)."""
    names = list(FAMILIES)
    weights = np.array([FAMILIES[n][0] for n in names])
    family = names[rng.choice(len(names), p=weights / weights.sum())]
    _, modify, (y0, y1) = FAMILIES[family]

    def u(lo, hi):
        return float(rng.uniform(lo, hi))

    angles = _base(u)
    modify(u, rng, angles)
    for key, value in angles.items():
        lo, hi = LIMITS[key.removeprefix("right_").removeprefix("left_")]
        angles[key] = float(np.clip(value, lo, hi))
    yaw = u(y0, y1) * (1 if y0 < 0 or rng.random() < 0.5 else -1)
    return family, angles, yaw


def pose_body(shape: Shape, angles: dict, pelvis_rot: np.ndarray):
    """Forward kinematics: joints {name: (3,)} and primitives around the pelvis centre, the body
    frame turned by pelvis_rot (the person's yaw and lean)."""
    h, g, L = shape.height, shape.girth, shape.length
    ang = {k: np.radians(v) for k, v in angles.items()}
    down = np.array([0.0, -1.0, 0.0])

    def kind(name):
        return name.removeprefix("right_").removeprefix("left_")

    def ell(name, centre, rot, scale=1.0):
        return Ellipsoid(centre, rot, np.array(SEMI[kind(name)]) * h * scale, PART_LABEL[name])

    def cap(name, a, b):
        return Capsule(a, b, RADIUS[kind(name)] * h * g, PART_LABEL[name])

    trunk = pelvis_rot @ rx(ang["trunk_bend"]) @ rz(ang["trunk_lateral"]) @ ry(ang["trunk_twist"])
    head_rot = trunk @ rx(ang["head_nod"]) @ ry(ang["head_turn"]) @ rz(ang["head_tilt"])
    neck_base = trunk @ [0, L["trunk"], 0]
    neck_top = neck_base + head_rot @ [0, L["neck"], 0]
    head = neck_base + head_rot @ [0, L["neck"] + SEMI["head"][1] * h * shape.head_scale * 0.85, 0.01 * h]
    joints = dict(head=head, neck=neck_base, spine_mid=trunk @ [0, 0.5 * L["trunk"], 0])
    prims = [ell("head", head, head_rot, shape.head_scale), cap("neck", neck_base, neck_top),
             ell("chest", trunk @ [0, L["trunk"] - 0.09 * h, 0], trunk, g),
             ell("abdomen", trunk @ [0, 0.09 * h, 0], trunk, g),
             ell("pelvis", pelvis_rot @ [0, 0.01 * h, -0.005 * h], pelvis_rot, g)]
    shoulders = {}
    for side, sx in SIDES:
        a = {k.removeprefix(side + "_"): v for k, v in ang.items() if k.startswith(side + "_")}
        shoulder = neck_base + trunk @ [sx * L["shoulder_half"], -L["shoulder_drop"], -0.01 * h]
        upper = trunk @ rz(sx * a["shoulder_abd"]) @ rx(-a["shoulder_flex"]) @ ry(-sx * a["shoulder_rot"])
        elbow = shoulder + upper @ down * L["upper_arm"]
        fore = upper @ rx(-a["elbow"])
        wrist = elbow + fore @ down * L["forearm"]
        hip = pelvis_rot @ [sx * L["hip_half"], 0, 0]
        thigh = pelvis_rot @ rz(sx * a["hip_abd"]) @ rx(-a["hip_flex"]) @ ry(-sx * a["hip_rot"])
        knee = hip + thigh @ down * L["thigh"]
        shin = thigh @ rx(a["knee"])
        ankle = knee + shin @ down * L["shin"]
        foot = pelvis_rot @ ry(-sx * a["hip_rot"]) @ rx(a["ankle"])
        shoulders[side] = shoulder
        joints.update({f"{side}_shoulder": shoulder, f"{side}_elbow": elbow, f"{side}_wrist": wrist,
                       f"{side}_hip": hip, f"{side}_knee": knee, f"{side}_ankle": ankle})
        prims += [cap(f"{side}_upper_arm", shoulder, elbow),
                  cap(f"{side}_forearm", elbow, wrist),
                  ell(f"{side}_hand", wrist + fore @ down * L["hand"], fore),
                  cap(f"{side}_thigh", hip, knee),
                  cap(f"{side}_shin", knee, ankle),
                  ell(f"{side}_foot", ankle + foot @ [0, -0.02 * h, 0.045 * h], foot)]
    prims.append(cap("shoulders", shoulders["right"], shoulders["left"]))
    return {k: np.asarray(v, float) for k, v in joints.items()}, prims
