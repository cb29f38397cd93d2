"""Structure from motion around pycolmap (COLMAP's own C++): the ``recon sfm`` pipeline.

``run_sfm(inputs, out_dir, SfMConfig(...)) -> SfMReport``; converters between pycolmap and our
scene types in ``recon.sfm._pycolmap``. pycolmap and OpenCV are imported inside functions.
"""

from recon.sfm.pipeline import SfMConfig, SfMReport, run_sfm

__all__ = ["SfMConfig", "SfMReport", "run_sfm"]
