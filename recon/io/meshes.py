"""The one mesh-file reader: any file trimesh reads (PLY, OBJ, GLB / glTF, STL, OFF) as a
``trimesh.Trimesh``, with one error naming the file. recon.export.read_mesh (typed Mesh),
`recon info` and the viewer all read meshes through it. trimesh loads inside the function."""

from __future__ import annotations

from pathlib import Path

from recon.errors import FormatError

__all__ = ["read_trimesh"]


def read_trimesh(path, *, allow_empty: bool = False):
    """``trimesh.Trimesh`` of the mesh file ``path`` (vertices and faces as stored, not processed).

    FormatError naming ``path`` when trimesh cannot parse it, when it holds no triangle mesh,
    or (unless ``allow_empty``) when the mesh has no faces.
    """
    import trimesh

    path = Path(path)
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as e:  # noqa: BLE001 - trimesh's parsers raise anything; every failure names the file
        raise FormatError(path, f"cannot read it as a mesh: {type(e).__name__}: {e}") from None
    if not isinstance(mesh, trimesh.Trimesh) or (len(mesh.faces) == 0 and not allow_empty):
        raise FormatError(path, "no triangles found in the mesh file")
    return mesh
