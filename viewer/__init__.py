"""viewer: the viser web viewer (points, cameras, splats, meshes, labels, live training).

Imports stay light: viser is imported by ``viewer.app`` / ``viewer.live`` only when a server
starts. Entry points: ``recon view PATH`` (``viewer.detect.load`` + ``viewer.app.SceneViewer``)
and ``viewer.live.TrainingViewer`` for trainers.
"""
