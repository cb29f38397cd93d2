"""viewer: the viser web viewer (points, cameras, splats, meshes, labels, live training).

Imports stay light: viser is imported only when a server starts. Public surface (loaded lazily)::

    from viewer import load, SceneViewer, TrainingViewer
    SceneViewer(load("out/sfm")).wait()          # what `recon view out/sfm` does

Modules: ``viewer.detect`` (what is this path, load it), ``viewer.content`` (typed scene
content), ``viewer.app`` (SceneViewer), ``viewer.live`` (TrainingViewer), ``viewer.camera_path``
(camera-path JSON, rendering a path), ``viewer.convert`` (our conventions <-> viser's),
``viewer.headless`` (headless Chromium over CDP, for tests and benchmarks).
"""

from __future__ import annotations

from recon._lazy import lazy_exports

__all__ = ["SceneContent", "SceneViewer", "TrainingViewer", "ViewerOptions", "load"]

_LAZY = {
    "SceneViewer": "viewer.app",
    "ViewerOptions": "viewer.app",
    "TrainingViewer": "viewer.live",
    "SceneContent": "viewer.content",
    "load": "viewer.detect",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
