"""Runs one pycolmap mapper call in a child process, so that a C++ abort (SIGABRT/SIGSEGV)
kills only the child: the database and everything written so far survive, and the parent
reports the failure. Usage: python -m recon.sfm._worker '<json>'"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    job = json.loads(argv[0])
    import pycolmap

    pycolmap.set_random_seed(int(job.get("seed", 0)))
    if job["mapper"] == "global":
        opts = pycolmap.GlobalPipelineOptions()
        opts.num_threads = int(job.get("num_threads", -1))
        opts.random_seed = int(job.get("seed", 0))
        if job.get("image_names"):
            opts.image_names = job["image_names"]
        if job.get("fix_intrinsics"):
            ba = opts.mapper.bundle_adjustment
            ba.refine_focal_length = ba.refine_principal_point = ba.refine_extra_params = False
        models = pycolmap.global_mapping(job["database"], job["image_dir"], job["output"], opts)
    else:
        opts = pycolmap.IncrementalPipelineOptions()
        opts.num_threads = int(job.get("num_threads", -1))
        opts.random_seed = int(job.get("seed", 0))
        opts.min_model_size = int(job.get("min_model_size", 3))
        ratio = float(job.get("global_ba_ratio", 1.1))
        opts.ba_global_frames_ratio = opts.ba_global_points_ratio = ratio
        if job.get("image_names"):
            opts.image_names = job["image_names"]
        if job.get("fix_intrinsics"):
            opts.ba_refine_focal_length = False
            opts.ba_refine_extra_params = False
            opts.ba_refine_principal_point = False
        models = pycolmap.incremental_mapping(job["database"], job["image_dir"], job["output"], opts)
    # the pipeline writes each model to output/<k>; make sure they are all on disk
    from pathlib import Path

    for k, rec in models.items():
        d = Path(job["output"]) / str(k)
        d.mkdir(parents=True, exist_ok=True)
        rec.write_binary(str(d))
    print(json.dumps({"models": sorted(int(k) for k in models)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
