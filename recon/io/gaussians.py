"""3D Gaussian splats and their standard PLY layout (the one the Inria 3DGS code, gsplat,
SuperSplat and most viewers read and write). NumPy only: no torch.

PLY vertex properties, in this order, all ``float`` (float32), binary little endian::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  f_rest_0 .. f_rest_{3K-1}  opacity
    scale_0 scale_1 scale_2  rot_0 rot_1 rot_2 rot_3

- ``x y z``: means in world coordinates (our world frame; no axis flip).
- ``nx ny nz``: zeros (3DGS writes them; readers ignore them).
- ``f_dc_*``: degree-0 SH coefficient per channel (colour = 0.5 + C0 * f_dc, C0 = 0.28209479).
- ``f_rest_*``: higher SH coefficients, **channel-major** as in 3DGS: ``f_rest_{c*K + k}`` is
  coefficient ``k + 1`` of channel ``c``; K = 3, 8 or 15 for SH degree 1, 2, 3 (0 for degree 0).
- ``opacity``: logit of the opacity (opacity = sigmoid(value)).
- ``scale_*``: natural log of the standard deviations along the Gaussian's local axes.
- ``rot_*``: quaternion w, x, y, z (Hamilton; 3DGS normalises on load, so do we not assume unit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.errors import FormatError
from recon.io.ply import parse_ply_header

__all__ = ["SH_C0", "GaussianCloud", "read_splat_ply", "sh_degree_from_rest", "write_splat_ply"]

SH_C0 = 0.28209479177387814  # real SH Y_0^0 = 1 / (2 sqrt(pi))

_NUM_REST_BY_DEGREE = {0: 0, 1: 3, 2: 8, 3: 15}


def sh_degree_from_rest(num_rest: int) -> int:
    """SH degree from the number K of non-DC coefficients per channel (0, 3, 8, 15)."""
    for d, k in _NUM_REST_BY_DEGREE.items():
        if k == num_rest:
            return d
    raise ValueError(f"num_rest: expected 0, 3, 8 or 15 SH coefficients per channel, got {num_rest}")


@dataclass(eq=False)
class GaussianCloud:
    """N anisotropic 3D Gaussians with view-dependent colour (spherical harmonics).

    Arrays are float32 (the PLY storage type), so a write/read round trip is bit-exact.
    """

    means: np.ndarray  # [N, 3] world coordinates
    log_scales: np.ndarray  # [N, 3] log of the standard deviations (world units)
    quats_wxyz: np.ndarray  # [N, 4] rotation world_from_local, Hamilton (w, x, y, z), need not be unit
    opacity_logits: np.ndarray  # [N] opacity = sigmoid(logit)
    sh_dc: np.ndarray  # [N, 3] degree-0 SH coefficient per RGB channel
    sh_rest: np.ndarray  # [N, K, 3] higher-degree SH coefficients, K in {0, 3, 8, 15}

    def __post_init__(self):
        n = None
        for name, last in (("means", (3,)), ("log_scales", (3,)), ("quats_wxyz", (4,)),
                           ("opacity_logits", ()), ("sh_dc", (3,))):
            arr = np.asarray(getattr(self, name))
            if arr.dtype.kind not in "fiu":
                raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            if arr.ndim != 1 + len(last) or arr.shape[1:] != last:
                want = "[N" + "".join(f", {d}" for d in last) + "]"
                raise ValueError(f"{name}: expected shape {want}, got {arr.shape}")
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise ValueError(f"{name}: has {arr.shape[0]} rows, but means has {n}")
            setattr(self, name, arr)
        rest = np.asarray(self.sh_rest)
        if rest.size == 0 and rest.ndim != 3:
            rest = np.zeros((n, 0, 3), dtype=np.float32)
        rest = np.ascontiguousarray(rest, dtype=np.float32)
        if rest.ndim != 3 or rest.shape[0] != n or rest.shape[2] != 3:
            raise ValueError(f"sh_rest: expected shape [N={n}, K, 3], got {rest.shape}")
        sh_degree_from_rest(rest.shape[1])
        self.sh_rest = rest

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_rest(self.sh_rest.shape[1])

    @property
    def scales(self) -> np.ndarray:
        """[N, 3] standard deviations (exp of ``log_scales``)."""
        return np.exp(self.log_scales.astype(np.float64))

    @property
    def opacities(self) -> np.ndarray:
        """[N] opacities in (0, 1)."""
        return 1.0 / (1.0 + np.exp(-self.opacity_logits.astype(np.float64)))

    @property
    def colors_dc(self) -> np.ndarray:
        """[N, 3] view-independent base colour in [0, 1] (clipped), from the DC term."""
        return np.clip(0.5 + SH_C0 * self.sh_dc.astype(np.float64), 0.0, 1.0)

    def subset(self, index) -> GaussianCloud:
        """The Gaussians selected by a boolean mask or integer index array."""
        return GaussianCloud(self.means[index], self.log_scales[index], self.quats_wxyz[index],
                             self.opacity_logits[index], self.sh_dc[index], self.sh_rest[index])

    @classmethod
    def from_points(cls, xyz, rgb=None, *, scale: float | np.ndarray = 0.01, opacity: float = 0.1,
                    sh_degree: int = 3) -> GaussianCloud:
        """Isotropic Gaussians at points ``xyz`` [N, 3] with colours ``rgb`` [N, 3] (uint8 or
        float in [0, 1]; grey if None), standard deviation ``scale`` (scalar or [N])."""
        xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        n = xyz.shape[0]
        if rgb is None:
            col = np.full((n, 3), 0.5)
        else:
            rgb = np.asarray(rgb)
            col = rgb / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float64)
            col = col.reshape(n, 3)
        s = np.broadcast_to(np.asarray(scale, dtype=np.float64), (n,))
        if np.any(~(s > 0)):
            raise ValueError("scale: expected positive standard deviations")
        if not 0.0 < opacity < 1.0:
            raise ValueError(f"opacity: expected a value in (0, 1), got {opacity}")
        quats = np.zeros((n, 4))
        quats[:, 0] = 1.0
        return cls(xyz, np.repeat(np.log(s)[:, None], 3, axis=1), quats,
                   np.full(n, np.log(opacity / (1 - opacity))), (col - 0.5) / SH_C0,
                   np.zeros((n, _NUM_REST_BY_DEGREE[sh_degree], 3)))


# =========================================================================================
# PLY I/O
# =========================================================================================

def _property_names(num_rest: int) -> list[str]:
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * num_rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


def write_splat_ply(path, gaussians: GaussianCloud, *, attributes: dict[str, np.ndarray] | None = None) -> Path:
    """Write ``gaussians`` in the standard 3DGS binary little-endian PLY layout. Returns the path.

    attributes: extra per-Gaussian vertex properties appended after the standard ones (name ->
    [N] int or float array, stored as int32 / float32), e.g. ``class_id``, ``instance_id``,
    ``confidence`` from ``recon label``; viewers that do not know them ignore them, and so does
    :func:`read_splat_ply` (``read_ply`` returns them as attributes)."""
    if not isinstance(gaussians, GaussianCloud):
        raise TypeError(f"gaussians: expected recon.io.GaussianCloud, got {type(gaussians).__name__}")
    path = Path(path)
    g = gaussians
    n, k = len(g), g.sh_rest.shape[1]
    names = _property_names(k)
    extra = []
    for name, arr in dict(attributes or {}).items():
        a = np.asarray(arr)
        if not isinstance(name, str) or not name.isidentifier() or name in names:
            raise ValueError(f"attributes: bad or duplicate property name {name!r}")
        if a.shape != (n,) or a.dtype.kind not in "iuf":
            raise ValueError(f"attributes[{name!r}]: expected a numeric [{n}] array, got {a.dtype} {a.shape}")
        extra.append((name, "<f4" if a.dtype.kind == "f" else "<i4", a))
    data = np.empty(n, dtype=[(name, "<f4") for name in names] + [(e[0], e[1]) for e in extra])
    for name, _, a in extra:
        data[name] = a
    for i, c in enumerate("xyz"):
        data[c] = g.means[:, i]
        data["n" + c] = 0.0
    for c in range(3):
        data[f"f_dc_{c}"] = g.sh_dc[:, c]
        for j in range(k):
            data[f"f_rest_{c * k + j}"] = g.sh_rest[:, j, c]
        data[f"scale_{c}"] = g.log_scales[:, c]
    data["opacity"] = g.opacity_logits
    for c in range(4):
        data[f"rot_{c}"] = g.quats_wxyz[:, c]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in names]
    header += [f"property {'float' if t == '<f4' else 'int'} {name}" for name, t, _ in extra]
    header += ["end_header"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(data.tobytes())
    return path


def _parse_header(path: Path, raw: bytes):
    """(format, [(element, count, [(property, dtype code or 'list:...')])], data offset), from
    the one PLY header parser (:mod:`recon.io.ply`)."""
    hdr = parse_ply_header(path, raw[:1 << 20])
    return hdr.format, [(e.name, e.count, list(e.properties)) for e in hdr.elements], hdr.header_bytes


def read_splat_ply(path) -> GaussianCloud:
    """Read a 3DGS-layout PLY (binary little/big endian or ASCII) into a :class:`GaussianCloud`.

    Property order in the file does not matter; ``nx ny nz`` and unknown properties are ignored.
    Raises :class:`recon.errors.FormatError` naming the file and the missing/odd property.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    raw = path.read_bytes()
    fmt, elements, body_start = _parse_header(path, raw)
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise FormatError(path, "no 'vertex' element")
    if names.index("vertex") != 0:
        # Elements before the vertex block would have to be skipped; 3DGS files never have them.
        raise FormatError(path, "the 'vertex' element must come first in a splat PLY")
    _, n, props = elements[names.index("vertex")]
    if any(t.startswith("list") for _, t in props):
        raise FormatError(path, "vertex element has list properties; not a 3DGS splat PLY")
    prop_names = [p for p, _ in props]
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1",
                "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [r for r in required if r not in prop_names]
    if missing:
        raise FormatError(path, f"not a 3DGS splat PLY: missing vertex properties {missing} "
                                f"(found {prop_names[:12]}{'...' if len(prop_names) > 12 else ''})")
    rest_names = sorted((p for p in prop_names if p.startswith("f_rest_")),
                        key=lambda s: (int(s[7:]) if s[7:].isdecimal() else -1, s))
    if len(rest_names) % 3 or rest_names != [f"f_rest_{i}" for i in range(len(rest_names))]:
        raise FormatError(path, f"f_rest_* properties must be f_rest_0..f_rest_{{3K-1}}, got {len(rest_names)}")
    k = len(rest_names) // 3
    if k not in _NUM_REST_BY_DEGREE.values():
        raise FormatError(path, f"{len(rest_names)} f_rest_* properties: expected 0, 9, 24 or 45")
    if fmt == "ascii":
        text = raw[body_start:].decode("ascii", errors="replace").splitlines()
        if len(text) < n:
            raise FormatError(path, f"truncated: header says {n} vertices, found {len(text)} lines")
        vals = np.loadtxt(text[:n], dtype=np.float64, ndmin=2) if n else np.zeros((0, len(props)))
        if vals.shape[1] != len(props):
            raise FormatError(path, f"ASCII rows have {vals.shape[1]} values, header declares {len(props)}")
        cols = {p: vals[:, i].astype(np.float32) for i, p in enumerate(prop_names)}
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(p, order + t) for p, t in props])
        need = n * dtype.itemsize
        if len(raw) - body_start < need:
            raise FormatError(path, f"truncated: header says {n} vertices ({need} bytes), "
                                    f"file has {len(raw) - body_start} bytes of data")
        data = np.frombuffer(raw, dtype=dtype, count=n, offset=body_start)
        cols = {p: np.asarray(data[p]).astype(np.float32) for p in prop_names}

    def stack(keys):
        return np.stack([cols[key] for key in keys], axis=1) if n else np.zeros((0, len(keys)), np.float32)

    rest = np.zeros((n, k, 3), dtype=np.float32)
    for c in range(3):
        for j in range(k):
            rest[:, j, c] = cols[f"f_rest_{c * k + j}"]
    try:
        return GaussianCloud(
            means=stack(["x", "y", "z"]),
            log_scales=stack(["scale_0", "scale_1", "scale_2"]),
            quats_wxyz=stack(["rot_0", "rot_1", "rot_2", "rot_3"]),
            opacity_logits=cols["opacity"],
            sh_dc=stack(["f_dc_0", "f_dc_1", "f_dc_2"]),
            sh_rest=rest,
        )
    except ValueError as e:  # pragma: no cover - shapes are consistent by construction
        raise FormatError(path, str(e)) from None
