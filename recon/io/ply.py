"""PLY point clouds: xyz, rgb, normals and extra per-vertex attributes; binary and ASCII.

Reads ``binary_little_endian``, ``binary_big_endian`` and ``ascii`` PLY 1.0 with NumPy
structured dtypes (one ``np.fromfile`` for binary vertex data). Writes binary little-endian
(default) or ASCII. Only the ``vertex`` element is loaded; other elements (faces, edges) are
skipped and reported (:class:`PlyHeader` lists them; ``read_ply`` warns), so a mesh PLY gives its
vertices. Use ``trimesh`` or Open3D for meshes.

Vertex property mapping:

=====================================  =========================================================
``x y z``                              ``PointCloud.xyz`` [N, 3], dtype as stored (float32/64)
``red green blue`` (uchar)             ``PointCloud.rgb`` [N, 3] uint8 (other colour dtypes stay
                                       in ``attributes`` untouched)
``nx ny nz``                           ``PointCloud.normals`` [N, 3], dtype as stored
anything else (``class_id``,           ``PointCloud.attributes[name]`` [N], dtype as stored
``instance_id``, ``alpha``, ...)
=====================================  =========================================================

PLY has no 64-bit integers: ``write_ply`` stores int64/uint64 attributes as int32/uint32 when
every value fits (else raises), so they read back as 32-bit. The 3D Gaussian Splatting layout
(``f_dc_0``, ``opacity``, ``scale_0``, ``rot_0`` ...) is plain vertex properties here; use
``recon.io.gaussians.read_splat_ply`` for a typed ``GaussianCloud``.
"""

from __future__ import annotations

import itertools
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon.errors import FormatError

__all__ = ["PlyElement", "PlyHeader", "PointCloud", "parse_ply_header", "read_ply", "read_ply_header", "write_ply"]

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_NUMPY_TO_PLY = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int",
                 "u4": "uint", "f4": "float", "f8": "double"}
_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_MAX_HEADER = 1 << 20


@dataclass(eq=False)
class PointCloud:
    """A point cloud: ``xyz`` [N, 3] (float32 or float64, kept as given), optional ``rgb``
    [N, 3] uint8, optional ``normals`` [N, 3] (float) and ``attributes``: name -> [N] array of
    extra per-point scalars (e.g. ``class_id``, ``instance_id`` int32, ``error`` float)."""

    xyz: np.ndarray
    rgb: np.ndarray | None = None
    normals: np.ndarray | None = None
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        xyz = np.asarray(self.xyz)
        if xyz.dtype.kind != "f":
            raise TypeError(f"xyz: expected a float array, got dtype {xyz.dtype}")
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise ValueError(f"xyz: expected shape [N, 3], got {xyz.shape}")
        n = xyz.shape[0]
        self.xyz = xyz
        if self.rgb is not None:
            rgb = np.asarray(self.rgb)
            if rgb.dtype != np.uint8:
                raise TypeError(f"rgb: expected uint8, got dtype {rgb.dtype} (convert explicitly, e.g. "
                                "(rgb01 * 255).round().astype(np.uint8))")
            if rgb.shape != (n, 3):
                raise ValueError(f"rgb: expected shape [{n}, 3], got {rgb.shape}")
            self.rgb = rgb
        if self.normals is not None:
            nrm = np.asarray(self.normals)
            if nrm.dtype.kind != "f":
                raise TypeError(f"normals: expected a float array, got dtype {nrm.dtype}")
            if nrm.shape != (n, 3):
                raise ValueError(f"normals: expected shape [{n}, 3], got {nrm.shape}")
            self.normals = nrm
        attrs = {}
        for name, arr in dict(self.attributes).items():
            a = np.asarray(arr)
            if not isinstance(name, str) or not name or any(c.isspace() for c in name):
                raise ValueError(f"attributes: name {name!r} must be a non-empty string without spaces")
            if a.shape != (n,):
                raise ValueError(f"attributes[{name!r}]: expected shape [{n}], got {a.shape}")
            if a.dtype.kind not in "iuf" and a.dtype != np.bool_:
                raise TypeError(f"attributes[{name!r}]: expected a numeric array, got dtype {a.dtype}")
            attrs[name] = a
        self.attributes = attrs

    def __len__(self) -> int:
        return int(self.xyz.shape[0])

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min [3], max [3]) of xyz; raises ValueError on an empty cloud."""
        if len(self) == 0:
            raise ValueError("bounds: the point cloud is empty")
        return self.xyz.min(axis=0), self.xyz.max(axis=0)

    def __repr__(self) -> str:
        extras = [k for k, v in (("rgb", self.rgb), ("normals", self.normals)) if v is not None]
        extras += list(self.attributes)
        return f"PointCloud({len(self)} points, xyz {self.xyz.dtype}{', ' if extras else ''}{', '.join(extras)})"


@dataclass(frozen=True)
class PlyElement:
    name: str
    count: int
    properties: tuple[tuple[str, str], ...]  # (name, numpy dtype code like 'f4'); lists: 'list:u1:i4'

    @property
    def has_lists(self) -> bool:
        return any(t.startswith("list:") for _, t in self.properties)


@dataclass(frozen=True)
class PlyHeader:
    format: str  # 'ascii' | 'binary_little_endian' | 'binary_big_endian'
    elements: tuple[PlyElement, ...]
    comments: tuple[str, ...]
    header_bytes: int  # offset of the data

    def element(self, name: str) -> PlyElement | None:
        return next((e for e in self.elements if e.name == name), None)


def read_ply_header(path) -> PlyHeader:
    """Parse the header only (cheap; for ``recon info``). Raises FormatError on a bad header."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(_MAX_HEADER)
    return parse_ply_header(path, head)


def parse_ply_header(path, head: bytes) -> PlyHeader:
    """The header at the start of ``head`` (the file's first bytes; ``path`` names it in errors).
    The one PLY header parser: point clouds, meshes and 3DGS splat PLYs all use it."""
    path = Path(path)
    if not head.startswith(b"ply"):
        raise FormatError(path, f"not a PLY file: starts with {head[:16]!r}, expected 'ply'")
    end = head.find(b"end_header")
    if end < 0:
        raise FormatError(path, "PLY header has no 'end_header' line (truncated or not a PLY file)")
    nl = head.find(b"\n", end)
    if nl < 0:
        raise FormatError(path, "truncated right after 'end_header'")
    try:
        text = head[:end].decode("ascii")
    except UnicodeDecodeError:
        raise FormatError(path, "PLY header contains non-ASCII bytes") from None
    fmt = None
    elements: list[list] = []
    comments: list[str] = []
    for lineno, line in enumerate(text.replace("\r", "").split("\n")[1:], start=2):
        tok = line.split()
        if not tok:
            continue
        kw = tok[0]
        if kw == "format":
            if len(tok) != 3 or tok[1] not in _FORMATS or tok[2] != "1.0":
                raise FormatError(path, f"header line {lineno}: unsupported format line {line.strip()!r} "
                                        f"(expected 'format {{{'|'.join(_FORMATS)}}} 1.0')")
            fmt = tok[1]
        elif kw in ("comment", "obj_info"):
            comments.append(line.strip()[len(kw) + 1:])
        elif kw == "element":
            if len(tok) != 3 or not tok[2].isdigit():
                raise FormatError(path, f"header line {lineno}: bad element line {line.strip()!r}")
            elements.append([tok[1], int(tok[2]), []])
        elif kw == "property":
            if not elements:
                raise FormatError(path, f"header line {lineno}: property before any element")
            if len(tok) == 5 and tok[1] == "list":
                if tok[2] not in _PLY_TYPES or tok[3] not in _PLY_TYPES:
                    raise FormatError(path, f"header line {lineno}: unknown list types in {line.strip()!r}")
                elements[-1][2].append((tok[4], f"list:{_PLY_TYPES[tok[2]]}:{_PLY_TYPES[tok[3]]}"))
            elif len(tok) == 3:
                if tok[1] not in _PLY_TYPES:
                    raise FormatError(path, f"header line {lineno}: unknown property type {tok[1]!r} "
                                            f"(known: {', '.join(_PLY_TYPES)})")
                elements[-1][2].append((tok[2], _PLY_TYPES[tok[1]]))
            else:
                raise FormatError(path, f"header line {lineno}: bad property line {line.strip()!r}")
        else:
            raise FormatError(path, f"header line {lineno}: unknown keyword {kw!r}")
    if fmt is None:
        raise FormatError(path, "PLY header has no 'format' line")
    return PlyHeader(fmt, tuple(PlyElement(n, c, tuple(p)) for n, c, p in elements), tuple(comments), nl + 1)


def read_ply(path) -> PointCloud:
    """Read the ``vertex`` element of a PLY file into a :class:`PointCloud`.

    Raises:
        FileNotFoundError; FormatError naming the file when the header is malformed, ``x y z``
        are missing, the data are truncated, or xyz / normals contain NaN or Inf.
    """
    path = Path(path)
    header = read_ply_header(path)
    vertex = header.element("vertex")
    if vertex is None:
        raise FormatError(path, f"no 'vertex' element (elements: {[e.name for e in header.elements]})")
    names = [n for n, _ in vertex.properties]
    missing = [c for c in "xyz" if c not in names]
    if missing:
        raise FormatError(path, f"vertex element lacks propert{'ies' if len(missing) > 1 else 'y'} "
                                f"{', '.join(missing)} (has {', '.join(names)})")
    if vertex.has_lists:
        raise FormatError(path, "vertex element has list properties: not a point cloud layout")
    others = [e for e in header.elements if e.name != "vertex" and e.count]
    if others:
        warnings.warn(f"{path}: ignoring element(s) " + ", ".join(f"{e.name} ({e.count})" for e in others)
                      + ": read_ply loads vertices only", stacklevel=2)
    data = _read_vertex_data(path, header, vertex)
    return _cloud_from_struct(path, data)


def _read_vertex_data(path: Path, header: PlyHeader, vertex: PlyElement) -> np.ndarray:
    before = header.elements[:header.elements.index(vertex)]
    if header.format == "ascii":
        dtype = np.dtype([(n, t) for n, t in vertex.properties])
        with open(path, "rb") as f:
            f.seek(header.header_bytes)
            skip = 0
            for e in before:  # ascii: one line per item whatever its properties
                skip += e.count
            lines = f.read().split(b"\n")
        lines = [ln for ln in lines[skip:skip + vertex.count]]
        if len(lines) < vertex.count or (vertex.count and not lines[-1].strip()):
            got = sum(1 for ln in lines if ln.strip())
            raise FormatError(path, f"truncated: header declares {vertex.count} vertices, found {got} lines")
        ncol = len(vertex.properties)
        try:
            flat = np.array(b" ".join(lines).split(), dtype=np.float64)
        except ValueError as e:
            raise FormatError(path, f"bad number in ASCII vertex data ({e})") from None
        if flat.size != ncol * vertex.count:
            raise FormatError(path, f"ASCII vertex data has {flat.size} values, expected {vertex.count} x {ncol}")
        flat = flat.reshape(vertex.count, ncol)
        out = np.empty(vertex.count, dtype=dtype)
        for j, (n, t) in enumerate(vertex.properties):
            col = flat[:, j]
            if np.dtype(t).kind in "iu":
                if not np.all(np.isfinite(col) & (col == np.round(col))):
                    raise FormatError(path, f"property {n} ({t}) holds non-integer values")
            out[n] = col
        return out
    endian = _FORMATS[header.format]
    offset = header.header_bytes
    for e in before:
        if e.has_lists:
            raise FormatError(path, f"element {e.name!r} with list properties precedes 'vertex': "
                                    "unsupported layout")
        offset += e.count * np.dtype([(n, endian + t) for n, t in e.properties]).itemsize
    dtype = np.dtype([(n, endian + t) for n, t in vertex.properties])
    need = offset + dtype.itemsize * vertex.count
    size = path.stat().st_size
    if size < need:
        raise FormatError(path, f"truncated: header declares {vertex.count} vertices of {dtype.itemsize} "
                                f"bytes ({need} bytes with the header), file has {size} bytes")
    data = np.fromfile(path, dtype=dtype, count=vertex.count, offset=offset)
    if endian != ("<" if sys.byteorder == "little" else ">"):
        data = data.astype(data.dtype.newbyteorder("="))
    return data


def _cloud_from_struct(path: Path, data: np.ndarray) -> PointCloud:
    names = data.dtype.names
    taken = {"x", "y", "z"}
    xyz_t = np.result_type(*(data.dtype[c] for c in "xyz"))
    if xyz_t.kind != "f":
        xyz_t = np.dtype(np.float64)
    xyz = np.empty((data.shape[0], 3), dtype=xyz_t)
    for j, c in enumerate("xyz"):
        xyz[:, j] = data[c]
    if not np.all(np.isfinite(xyz)):
        bad = int(np.count_nonzero(~np.isfinite(xyz).all(axis=1)))
        raise FormatError(path, f"{bad} vertex position(s) are NaN/Inf")
    rgb = None
    if all(c in names for c in ("red", "green", "blue")) and all(data.dtype[c] == np.uint8
                                                                   for c in ("red", "green", "blue")):
        rgb = np.stack([data["red"], data["green"], data["blue"]], axis=1)
        taken |= {"red", "green", "blue"}
    normals = None
    if all(c in names for c in ("nx", "ny", "nz")) and all(data.dtype[c].kind == "f" for c in ("nx", "ny", "nz")):
        normals = np.stack([data["nx"], data["ny"], data["nz"]], axis=1)
        if not np.all(np.isfinite(normals)):
            bad = int(np.count_nonzero(~np.isfinite(normals).all(axis=1)))
            raise FormatError(path, f"{bad} vertex normal(s) are NaN/Inf")
        taken |= {"nx", "ny", "nz"}
    attributes = {n: np.ascontiguousarray(data[n]) for n in names if n not in taken}
    return PointCloud(xyz, rgb, normals, attributes)


def write_ply(path, cloud: PointCloud, *, binary: bool = True, comments: tuple[str, ...] = ()) -> Path:
    """Write ``cloud`` as PLY: binary little-endian (default) or ASCII.

    Property order: x y z, nx ny nz, red green blue, then attributes in insertion order.
    Float dtypes are kept (float32 -> 'float', float64 -> 'double'); int64/uint64 attributes are
    stored as int32/uint32 when the values fit (PLY has no 64-bit integers), else ValueError;
    bool attributes as uchar.
    """
    if not isinstance(cloud, PointCloud):
        raise TypeError(f"cloud: expected recon.io.PointCloud, got {type(cloud).__name__}")
    path = Path(path)
    fields: list[tuple[str, np.ndarray]] = [("x", cloud.xyz[:, 0]), ("y", cloud.xyz[:, 1]), ("z", cloud.xyz[:, 2])]
    if cloud.normals is not None:
        fields += [("nx", cloud.normals[:, 0]), ("ny", cloud.normals[:, 1]), ("nz", cloud.normals[:, 2])]
    if cloud.rgb is not None:
        fields += [("red", cloud.rgb[:, 0]), ("green", cloud.rgb[:, 1]), ("blue", cloud.rgb[:, 2])]
    for name, arr in cloud.attributes.items():
        if name in {f for f, _ in fields}:
            raise ValueError(f"cloud.attributes: {name!r} clashes with a standard property")
        fields.append((name, _ply_storable(name, arr)))
    for c in comments:
        if "\n" in c or "\r" in c:
            raise ValueError(f"comments: {c!r} contains a line break")
    dtype = np.dtype([(n, _ply_code(a.dtype)) for n, a in fields])
    data = np.empty(len(cloud), dtype=dtype)
    for n, a in fields:
        data[n] = a
    fmt = "binary_little_endian" if binary else "ascii"
    header = ["ply", f"format {fmt} 1.0", *(f"comment {c}" for c in comments), f"element vertex {len(cloud)}"]
    header += [f"property {_NUMPY_TO_PLY[np.dtype(_ply_code(a.dtype)).str[1:]]} {n}" for n, a in fields]
    header.append("end_header")
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        if binary:
            data.astype(dtype.newbyteorder("<")).tofile(f)
        else:
            fmts = []
            for _, a in fields:
                k = a.dtype.kind
                fmts.append("%d" if k in "iub" else ("%.9g" if a.dtype.itemsize == 4 else "%.17g"))
            row = " ".join(fmts) + "\n"
            # One %-format per chunk keeps the number formatting in C (np.savetxt is ~2x slower).
            # 9 / 17 significant digits round-trip float32 / float64 exactly.
            chunk = 65536
            for start in range(0, len(cloud), chunk):
                part = data[start:start + chunk]
                flat = tuple(itertools.chain.from_iterable(part.tolist()))
                f.write(((row * len(part)) % flat).encode("ascii"))
    return path


def _ply_code(dt: np.dtype) -> str:
    dt = np.dtype(dt)
    if dt == np.bool_:
        return "<u1"
    return "<" + dt.str[1:]


def _ply_storable(name: str, arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr)
    if a.dtype == np.bool_:
        return a.astype(np.uint8)
    if a.dtype.kind in "iu" and a.dtype.itemsize == 8:
        target = np.int32 if a.dtype.kind == "i" else np.uint32
        info = np.iinfo(target)
        if a.size and (a.min() < info.min or a.max() > info.max):
            raise ValueError(f"cloud.attributes[{name!r}]: {a.dtype} values outside the {np.dtype(target)} "
                             "range cannot be stored in PLY (no 64-bit integers)")
        return a.astype(target)
    if a.dtype.str[1:] not in _NUMPY_TO_PLY:
        raise TypeError(f"cloud.attributes[{name!r}]: dtype {a.dtype} has no PLY type")
    return a
