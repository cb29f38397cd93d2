"""Structure from motion around pycolmap (COLMAP's own C++): the ``recon sfm`` pipeline.

``run_sfm(inputs, out_dir, SfMConfig(...)) -> SfMReport``, and its stages as functions of
(inputs, options) with typed results (``load_inputs``, ``choose_recipe``, ``extract_features``,
``match_features``, ``map_images``, ``retriangulate``, ``final_bundle_adjustment``,
``check_plausibility``, and the fallback rule ``leftover_inliers`` / ``needs_defaults``);
converters between pycolmap and our scene types in
``recon.sfm._pycolmap``. pycolmap and OpenCV are imported inside functions.
"""

from recon.sfm.pipeline import (
    AttemptResult,
    BAResult,
    FeaturesResult,
    InputsResult,
    MappingResult,
    MatchingResult,
    Plausibility,
    Recipe,
    SfMConfig,
    SfMReport,
    check_plausibility,
    choose_recipe,
    colmap_recipe,
    extract_features,
    final_bundle_adjustment,
    leftover_inliers,
    load_inputs,
    map_images,
    match_features,
    needs_defaults,
    retriangulate,
    run_sfm,
)

__all__ = ["AttemptResult", "BAResult", "FeaturesResult", "InputsResult", "MappingResult", "MatchingResult",
           "Plausibility", "Recipe", "SfMConfig", "SfMReport", "check_plausibility", "choose_recipe",
           "colmap_recipe", "extract_features", "final_bundle_adjustment", "leftover_inliers", "load_inputs",
           "map_images", "match_features", "needs_defaults", "retriangulate", "run_sfm"]
