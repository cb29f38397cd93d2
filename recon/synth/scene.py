"""Procedural scenes built from analytic primitives, deterministic from a seed.

World frame: right-handed, metres, **z up**, the floor is the plane z = 0 and the room is
centred on the origin. Cameras use OpenCV axes (x right, y down, z forward) as everywhere in
recon; poses are ``cam_from_world`` (:class:`calib.Rigid3`).

A :class:`Scene` is a list of :class:`Primitive` (rectangles, boxes, spheres, capped cylinders),
each with a pose ``world_from_local``, a semantic ``class_id`` and an ``instance_id``. Every
primitive splits into surface *patches* with a 2D parametrisation (u, v) in metres:

==========  =====  ============================================================================
kind        patch  parametrisation (local frame)
==========  =====  ============================================================================
rect        0      u = x + hx, v = y + hy (the rectangle |x| <= hx, |y| <= hy, z = 0)
box         0..5   faces -x, +x, -y, +y, -z, +z; u, v = the two in-face coordinates + half size
sphere      0..5   cube map: the dominant axis of the local normal picks the face (as box)
cylinder    0..2   side: u = r * atan2(y, x) + pi r, v = z + hz; caps -z, +z: u = x + r, v = y + r
==========  =====  ============================================================================

so textures stick to surfaces and are identical from every viewpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from calib import Rigid3, matrix_from_axis_angle

__all__ = ["CLASS_NAMES", "Instance", "Primitive", "Scene", "SceneConfig", "make_scene"]

#: Semantic classes of the procedural scenes (id -> name). 0 = nothing hit (sky / invalid).
CLASS_NAMES: dict[int, str] = {
    0: "void", 1: "floor", 2: "wall", 3: "table", 4: "chair", 5: "vase", 6: "shelf",
    7: "ball", 8: "crate", 9: "book",
}
_CLASS_IDS = {v: k for k, v in CLASS_NAMES.items()}

_KINDS = ("rect", "box", "sphere", "cylinder")
_NUM_PATCHES = {"rect": 1, "box": 6, "sphere": 6, "cylinder": 3}


@dataclass(eq=False)
class Primitive:
    """One analytic surface.

    ``size`` (metres, half extents): rect (hx, hy); box (hx, hy, hz); sphere (r,);
    cylinder (r, hz) with the axis along local z.
    """

    kind: str
    world_from_local: Rigid3
    size: np.ndarray
    class_id: int
    instance_id: int
    texture_seed: int
    palette: np.ndarray  # [K, 3] float colours in [0, 1]

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"kind: expected one of {_KINDS}, got {self.kind!r}")
        want = {"rect": 2, "box": 3, "sphere": 1, "cylinder": 2}[self.kind]
        self.size = np.asarray(self.size, dtype=np.float64).reshape(-1)
        if self.size.shape != (want,) or np.any(self.size <= 0):
            raise ValueError(f"size: {self.kind} needs {want} positive half extents, got {self.size}")
        self.palette = np.asarray(self.palette, dtype=np.float64).reshape(-1, 3)

    @property
    def num_patches(self) -> int:
        return _NUM_PATCHES[self.kind]

    def patch_sizes(self) -> list[tuple[float, float]]:
        """(width_m, height_m) of each patch, in patch order."""
        s = self.size
        if self.kind == "rect":
            return [(2 * s[0], 2 * s[1])]
        if self.kind == "box":
            hx, hy, hz = s
            return [(2 * hy, 2 * hz)] * 2 + [(2 * hx, 2 * hz)] * 2 + [(2 * hx, 2 * hy)] * 2
        if self.kind == "sphere":
            return [(2 * s[0], 2 * s[0])] * 6
        r, hz = s
        return [(2 * np.pi * r, 2 * hz), (2 * r, 2 * r), (2 * r, 2 * r)]

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        """(centre [3] world, radius)."""
        s = self.size
        if self.kind == "rect":
            rad = float(np.hypot(s[0], s[1]))
        elif self.kind == "box":
            rad = float(np.linalg.norm(s))
        elif self.kind == "sphere":
            rad = float(s[0])
        else:
            rad = float(np.hypot(s[0], s[1]))
        return self.world_from_local.translation.copy(), rad


@dataclass(frozen=True)
class Instance:
    instance_id: int
    class_id: int
    name: str  # e.g. "chair_1"


@dataclass
class SceneConfig:
    """Options of :func:`make_scene`.

    room_half_size: the room spans [-s, s]^2 in x and y (metres); walls stand on its border.
    wall_height: metres. num_chairs, num_balls, num_crates: object counts (>= 0).
    texel_size: metres per texel of the baked textures (smaller: sharper and more memory).
    texture_detail: multiplies the density of coloured patches and text marks.
    light_direction: direction TOWARDS the light (world), normalised; Lambertian shading with
    ``ambient`` in [0, 1].
    """

    room_half_size: float = 4.0
    wall_height: float = 3.0
    num_chairs: int = 2
    num_balls: int = 2
    num_crates: int = 2
    texel_size: float = 0.004
    texture_detail: float = 1.0
    light_direction: tuple[float, float, float] = (0.35, -0.45, 0.82)
    ambient: float = 0.35

    def validate(self) -> None:
        if not (np.isfinite(self.room_half_size) and self.room_half_size >= 2.5):
            raise ValueError(f"room_half_size: expected a finite value >= 2.5 m, got {self.room_half_size}")
        if not (self.wall_height > 0.5):
            raise ValueError(f"wall_height: expected > 0.5 m, got {self.wall_height}")
        for name in ("num_chairs", "num_balls", "num_crates"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= 8:
                raise ValueError(f"{name}: expected an integer in [0, 8], got {v!r}")
        if not (0.0005 <= self.texel_size <= 0.05):
            raise ValueError(f"texel_size: expected 0.0005..0.05 m, got {self.texel_size}")
        if not (0 < self.texture_detail <= 10):
            raise ValueError(f"texture_detail: expected (0, 10], got {self.texture_detail}")
        if not (0 <= self.ambient <= 1):
            raise ValueError(f"ambient: expected [0, 1], got {self.ambient}")
        if np.linalg.norm(self.light_direction) == 0:
            raise ValueError("light_direction: must be non-zero")


@dataclass(eq=False)
class Scene:
    """Primitives + instance table + lighting. Textures are baked lazily on first render."""

    primitives: list[Primitive]
    instances: list[Instance]
    seed: int
    config: SceneConfig = field(default_factory=SceneConfig)
    class_names: dict[int, str] = field(default_factory=lambda: dict(CLASS_NAMES))

    @property
    def light_direction(self) -> np.ndarray:
        d = np.asarray(self.config.light_direction, dtype=np.float64)
        return d / np.linalg.norm(d)

    def instance(self, instance_id: int) -> Instance:
        for ins in self.instances:
            if ins.instance_id == instance_id:
                return ins
        raise KeyError(f"no instance {instance_id}")

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned world bounds (min [3], max [3]) of all primitives (conservative)."""
        lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
        for p in self.primitives:
            c, r = p.bounding_sphere()
            lo, hi = np.minimum(lo, c - r), np.maximum(hi, c + r)
        return lo, hi

    @cached_property
    def atlas(self) -> TextureAtlas:
        return TextureAtlas.bake(self)


@dataclass(eq=False)
class TextureAtlas:
    """All patch textures and their mipmaps flattened into one buffer, for one vectorised
    trilinear gather.

    texels: [T, 3] uint8. offset, cols, rows: [P, L] per global patch and mip level (level 0 =
    full resolution; each level halves the previous one with area averaging; levels past the
    smallest repeat it). patch_base: [num primitives] index of each primitive's first patch.
    texel_size: metres per texel at level 0.
    """

    texels: np.ndarray
    offset: np.ndarray
    cols: np.ndarray
    rows: np.ndarray
    patch_base: np.ndarray
    texel_size: float

    LEVELS = 9

    @classmethod
    def bake(cls, scene: Scene) -> TextureAtlas:
        import cv2

        from recon.synth._texture import bake_texture

        ts = scene.config.texel_size
        arrays, base, shapes = [], [], []
        for prim in scene.primitives:
            base.append(len(shapes))
            for k, (w, h) in enumerate(prim.patch_sizes()):
                seed = (prim.texture_seed * 7919 + k * 104729) % (2**63)
                level = bake_texture(w, h, ts, seed, prim.palette, detail=scene.config.texture_detail)
                lv_shapes = []
                for _ in range(cls.LEVELS):
                    arrays.append(level)
                    lv_shapes.append(level.shape[:2])
                    if min(level.shape[:2]) > 2:
                        level = cv2.resize(level, ((level.shape[1] + 1) // 2, (level.shape[0] + 1) // 2),
                                           interpolation=cv2.INTER_AREA)
                shapes.append(lv_shapes)
        sizes = np.array([a.shape[0] * a.shape[1] for a in arrays], dtype=np.int64)
        offset = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        texels = np.concatenate([a.reshape(-1, 3) for a in arrays], 0)
        shp = np.array(shapes, np.int64)  # [P, L, 2] (rows, cols)
        return cls(texels, offset.reshape(len(shapes), cls.LEVELS), shp[..., 1], shp[..., 0],
                   np.array(base, np.int64), ts)

    def _bilinear(self, patch, level, x0f, y0f):
        cols0, rows0 = self.cols[patch, 0], self.rows[patch, 0]
        cols, rows, off = self.cols[patch, level], self.rows[patch, level], self.offset[patch, level]
        # align the patch corners across levels: x_l = x_0 * (cols_l - 1) / (cols_0 - 1)
        x = np.clip(x0f * ((cols - 1) / np.maximum(cols0 - 1, 1)), 0, cols - 1.000001)
        y = np.clip(y0f * ((rows - 1) / np.maximum(rows0 - 1, 1)), 0, rows - 1.000001)
        xi = x.astype(np.int64)
        yi = y.astype(np.int64)
        fx = (x - xi).astype(np.float32)[:, None]
        fy = (y - yi).astype(np.float32)[:, None]
        i00 = off + yi * cols + xi
        t = self.texels
        c00 = t[i00].astype(np.float32)
        c01 = t[i00 + 1].astype(np.float32)
        c10 = t[i00 + cols].astype(np.float32)
        c11 = t[i00 + cols + 1].astype(np.float32)
        top = c00 + (c01 - c00) * fx
        bot = c10 + (c11 - c10) * fx
        return top + (bot - top) * fy

    def lookup(self, patch: np.ndarray, u: np.ndarray, v: np.ndarray, lod: np.ndarray | None = None) -> np.ndarray:
        """Colour [N, 3] float32 in [0, 1] at (u, v) metres on global patches [N]; ``lod`` [N]
        is log2(footprint / texel_size) (trilinear mipmapping; None = level 0, bilinear)."""
        x = u / self.texel_size
        y = v / self.texel_size
        if lod is None:
            return self._bilinear(patch, 0, x, y) * np.float32(1.0 / 255.0)
        lod = np.clip(np.asarray(lod, np.float32), 0, self.LEVELS - 1)
        l0 = np.minimum(lod.astype(np.int64), self.LEVELS - 2)
        f = (lod - l0)[:, None]
        a = self._bilinear(patch, l0, x, y)
        b = self._bilinear(patch, l0 + 1, x, y)
        return (a + (b - a) * f) * np.float32(1.0 / 255.0)


# =========================================================================================
# Scene generation
# =========================================================================================

def _rot_z(angle: float) -> np.ndarray:
    return matrix_from_axis_angle(np.array([0.0, 0.0, angle]))


def make_scene(seed: int = 0, config: SceneConfig | None = None) -> Scene:
    """A furnished room: floor, four walls, a table with a vase and books, chairs around it, a
    shelf, balls and crates; sizes, colours, positions and textures all drawn from ``seed``.

    Objects stay inside a disc of radius ~2.2 m around the origin, so cameras orbiting at
    2.6-3.6 m look at them with the textured walls behind. The parts are drawn in a fixed order
    from one generator (:class:`_Room`), so a seed always gives the same room.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    config = SceneConfig() if config is None else config
    config.validate()
    room = _Room(np.random.default_rng(int(seed)), config)
    room.floor_and_walls()
    room.table_with_vase_and_books()
    room.chairs()
    room.shelf()
    room.balls_and_crates()
    return Scene(room.prims, room.instances, int(seed), config)


_I3 = np.eye(3)


def _place(R_obj: np.ndarray, t_obj: np.ndarray, R_loc: np.ndarray, t_loc) -> tuple[np.ndarray, np.ndarray]:
    """A part's (rotation, centre) in the world from its pose in its object's frame."""
    return R_obj @ R_loc, R_obj @ np.asarray(t_loc, float) + t_obj


class _Room:
    """The state of one room being furnished: the generator, the primitives and instances so far,
    and the floor discs already taken. Each method adds one kind of furniture."""

    def __init__(self, rng: np.random.Generator, config: SceneConfig):
        self.rng, self.config = rng, config
        self.prims: list[Primitive] = []
        self.instances: list[Instance] = []
        self.counters: dict[str, int] = {}
        self.occupied: list[tuple[np.ndarray, float]] = []
        self.table: tuple | None = None  # (R, centre, half width, half depth, yaw) once placed

    def palette(self, k: int = 4, dark: float = 0.1, bright: float = 0.95) -> np.ndarray:
        base = self.rng.uniform(dark, bright, 3)
        cols = [base]
        for _ in range(k - 1):
            cols.append(np.clip(base + self.rng.normal(0, 0.35, 3), 0.02, 1.0))
        return np.array(cols)

    def new_instance(self, cls_name: str) -> int:
        iid = len(self.instances) + 1
        self.counters[cls_name] = self.counters.get(cls_name, 0) + 1
        self.instances.append(Instance(iid, _CLASS_IDS[cls_name], f"{cls_name}_{self.counters[cls_name]}"))
        return iid

    def add(self, kind, R, t, size, iid, pal) -> None:
        ins = self.instances[iid - 1]
        self.prims.append(Primitive(kind, Rigid3(R, np.asarray(t, float)), size, ins.class_id, iid,
                                    int(self.rng.integers(2**31)), pal))

    def free_spot(self, radius: float, r_min: float, r_max: float) -> np.ndarray | None:
        """A floor point at r_min..r_max from the origin clear of every taken disc (taken now)."""
        rng = self.rng
        for _ in range(200):
            a = rng.uniform(0, 2 * np.pi)
            r = rng.uniform(r_min, r_max)
            p = np.array([r * np.cos(a), r * np.sin(a)])
            if all(np.linalg.norm(p - q) > radius + rq + 0.05 for q, rq in self.occupied):
                self.occupied.append((p, radius))
                return p
        return None

    def floor_and_walls(self) -> None:
        """Rect normals along local +z; the walls face the room."""
        s, H = self.config.room_half_size, self.config.wall_height
        iid = self.new_instance("floor")
        self.add("rect", _I3, [0, 0, 0], [s, s], iid, self.palette(dark=0.3, bright=0.8))
        Rx90 = matrix_from_axis_angle(np.array([np.pi / 2, 0, 0]))  # local z -> world -y
        for k in range(4):
            iid = self.new_instance("wall")
            Rz = _rot_z(k * np.pi / 2)
            c = Rz @ np.array([0.0, s, H / 2])
            self.add("rect", Rz @ Rx90, c, [s, H / 2], iid, self.palette(dark=0.25, bright=0.9))

    def table_with_vase_and_books(self) -> None:
        """The table at the centre; a vase (a body sphere and a neck cylinder) and books on it."""
        rng, add = self.rng, self.add
        iid = self.new_instance("table")
        tw, td, th = rng.uniform(0.55, 0.75), rng.uniform(0.38, 0.5), rng.uniform(0.7, 0.8)
        yaw = rng.uniform(0, np.pi)
        Rt, ct = _rot_z(yaw), np.array([rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), 0.0])
        pal = self.palette()
        top = 0.03
        add("box", *_place(Rt, ct, _I3, [0, 0, th - top]), [tw, td, top], iid, pal)
        leg = 0.035
        for sx in (-1, 1):
            for sy in (-1, 1):
                centre = [sx * (tw - 0.08), sy * (td - 0.08), (th - 2 * top) / 2]
                if rng.random() < 0.5:
                    add("box", *_place(Rt, ct, _I3, centre), [leg, leg, (th - 2 * top) / 2], iid, pal)
                else:
                    add("cylinder", *_place(Rt, ct, _I3, centre), [leg, (th - 2 * top) / 2], iid, pal)
        self.occupied.append((ct[:2], float(np.hypot(tw, td))))
        self.table = (Rt, ct, tw, td, yaw)
        table_top_z = th

        iid = self.new_instance("vase")
        pal = self.palette()
        vx, vy = rng.uniform(-0.4, 0.4) * tw, rng.uniform(-0.4, 0.4) * td
        rb = rng.uniform(0.08, 0.12)
        hb = rng.uniform(0.1, 0.16)
        add("sphere", *_place(Rt, ct, _I3, [vx, vy, table_top_z + rb * 0.9]), [rb], iid, pal)
        add("cylinder", *_place(Rt, ct, _I3, [vx, vy, table_top_z + rb * 1.6 + hb]), [rb * 0.45, hb], iid, pal)
        for _ in range(int(rng.integers(1, 4))):  # books lying on the table
            iid = self.new_instance("book")
            bx, by = rng.uniform(-0.6, 0.6) * tw, rng.uniform(-0.6, 0.6) * td
            if np.hypot(bx - vx, by - vy) < rb + 0.2:
                bx = -bx
            add("box", *_place(Rt @ _rot_z(rng.uniform(0, np.pi)), ct + Rt @ np.array([bx, by, 0]), _I3,
                               [0, 0, table_top_z + 0.025]),
                [rng.uniform(0.08, 0.13), rng.uniform(0.06, 0.09), 0.025], iid, self.palette())

    def chairs(self) -> None:
        """Chairs around the table, facing it (seat, four legs, a back and its two posts)."""
        rng, add = self.rng, self.add
        _Rt, ct, tw, td, yaw = self.table
        n = self.config.num_chairs
        for k in range(n):
            iid = self.new_instance("chair")
            pal = self.palette()
            a = yaw + k * 2 * np.pi / max(n, 1) + rng.uniform(-0.3, 0.3)
            dist = max(tw, td) + rng.uniform(0.35, 0.5)
            pos = ct[:2] + dist * np.array([np.cos(a), np.sin(a)])
            self.occupied.append((pos, 0.35))
            Rc = _rot_z(a - np.pi / 2 + rng.uniform(-0.25, 0.25))  # back (local +y) away from the table
            cc = np.array([pos[0], pos[1], 0.0])
            sw, sh = rng.uniform(0.2, 0.25), rng.uniform(0.42, 0.48)
            add("box", *_place(Rc, cc, _I3, [0, 0, sh]), [sw, sw, 0.025], iid, pal)
            for sx in (-1, 1):
                for sy in (-1, 1):
                    add("box", *_place(Rc, cc, _I3, [sx * (sw - 0.03), sy * (sw - 0.03), (sh - 0.025) / 2]),
                        [0.02, 0.02, (sh - 0.025) / 2], iid, pal)
            bh = rng.uniform(0.22, 0.3)
            add("box", *_place(Rc, cc, _I3, [0, sw - 0.02, sh + 0.025 + bh]), [sw, 0.02, bh], iid, pal)
            for sx in (-1, 1):
                add("box", *_place(Rc, cc, _I3, [sx * (sw - 0.03), sw - 0.02, sh + bh / 2]),
                    [0.02, 0.02, bh / 2 + 0.01], iid, pal)

    def shelf(self) -> None:
        """A shelf (two side boards, a back board, 3-4 shelves) with books on it."""
        rng, add = self.rng, self.add
        iid = self.new_instance("shelf")
        pal = self.palette()
        pos = self.free_spot(0.6, 1.4, 1.9)
        if pos is None:
            pos = np.array([1.9, 0.0])
        a = np.arctan2(pos[1], pos[0])
        Rs = _rot_z(a - np.pi / 2)  # open side (local -y) faces the centre
        cs = np.array([pos[0], pos[1], 0.0])
        shw, shd, shh = rng.uniform(0.35, 0.5), rng.uniform(0.15, 0.2), rng.uniform(0.6, 0.9)
        for sx in (-1, 1):
            add("box", *_place(Rs, cs, _I3, [sx * shw, 0, shh]), [0.015, shd, shh], iid, pal)
        add("box", *_place(Rs, cs, _I3, [0, shd - 0.01, shh]), [shw - 0.015, 0.01, shh], iid, pal)
        n_shelves = int(rng.integers(3, 5))
        for j in range(n_shelves):
            z = 0.02 + j * (2 * shh - 0.04) / (n_shelves - 1)
            add("box", *_place(Rs, cs, _I3, [0, 0, z]), [shw - 0.015, shd, 0.015], iid, pal)
        for j in range(n_shelves - 1):
            z = 0.02 + j * (2 * shh - 0.04) / (n_shelves - 1) + 0.015
            if rng.random() < 0.7:
                iid_b = self.new_instance("book")
                hb = rng.uniform(0.06, 0.1)
                add("box", *_place(Rs, cs, _I3, [rng.uniform(-0.5, 0.5) * shw, 0, z + hb]),
                    [rng.uniform(0.05, 0.12), shd * 0.8, hb], iid_b, self.palette())

    def balls_and_crates(self) -> None:
        """Balls and crates on the free floor; half the crates carry a second one."""
        rng, add = self.rng, self.add
        for _ in range(self.config.num_balls):
            r = rng.uniform(0.1, 0.22)
            pos = self.free_spot(r, 0.9, 1.9)
            if pos is None:
                continue
            iid = self.new_instance("ball")
            add("sphere", _I3, [pos[0], pos[1], r], [r], iid, self.palette())
        for _ in range(self.config.num_crates):
            hx, hy, hz = rng.uniform(0.12, 0.3, 3)
            pos = self.free_spot(float(np.hypot(hx, hy)), 0.9, 1.9)
            if pos is None:
                continue
            iid = self.new_instance("crate")
            add("box", _rot_z(rng.uniform(0, np.pi)), [pos[0], pos[1], hz], [hx, hy, hz], iid, self.palette())
            if rng.random() < 0.5:  # a second crate stacked on top
                h2 = rng.uniform(0.08, 0.15)
                add("box", _rot_z(rng.uniform(0, np.pi)), [pos[0], pos[1], 2 * hz + h2],
                    [hx * 0.7, hy * 0.7, h2], iid, self.palette())
