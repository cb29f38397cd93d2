"""Runs one pycolmap mapper call in a child process, so that a C++ abort (SIGABRT/SIGSEGV)
kills only the child: the database and everything written so far survive, and the parent
reports the failure. Usage: python -m recon.sfm._worker '<json>', or :func:`run_isolated` (used by
recon.sfm.pipeline and by the leaf tasks of recon.cluster.sfm)."""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    job = json.loads(argv[0])
    import pycolmap

    if job.get("task") == "match_vocabtree":
        # only ever with a local tree file: with pycolmap's default options it downloads one and
        # aborts the process when it cannot (see DEPENDENCIES.md)
        mo = pycolmap.FeatureMatchingOptions()
        mo.num_threads = int(job.get("num_threads", -1))
        po = pycolmap.VocabTreePairingOptions()
        po.vocab_tree_path = job["vocab_tree"]
        po.num_nearest_neighbors = int(job.get("num_neighbors", 10))
        po.num_threads = int(job.get("num_threads", -1))
        pycolmap.match_vocabtree(job["database"], mo, po)
        print(json.dumps({"matched": True}))
        return 0
    pycolmap.set_random_seed(int(job.get("seed", 0)))
    if job["mapper"] == "hierarchical":
        opts = pycolmap.HierarchicalPipelineOptions()
        opts.num_threads = int(job.get("num_threads", -1))
        opts.clustering_options.leaf_max_num_images = int(job.get("leaf_max_images", 500))
        inc = opts.incremental_options
        inc.random_seed = int(job.get("seed", 0))
        inc.min_model_size = int(job.get("min_model_size", 3))
        inc.ba_global_frames_ratio = inc.ba_global_points_ratio = float(job.get("global_ba_ratio", 1.1))
        if job.get("fix_extra"):
            inc.ba_refine_extra_params = False
        if job.get("fix_intrinsics"):
            inc.ba_refine_focal_length = inc.ba_refine_extra_params = inc.ba_refine_principal_point = False
        models = pycolmap.hierarchical_mapping(job["database"], job["image_dir"], job["output"], opts)
    elif job["mapper"] == "global":
        opts = pycolmap.GlobalPipelineOptions()
        opts.num_threads = int(job.get("num_threads", -1))
        opts.random_seed = int(job.get("seed", 0))
        if job.get("image_names"):
            opts.image_names = job["image_names"]
        if job.get("fix_extra"):
            opts.mapper.bundle_adjustment.refine_extra_params = False
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
        if job.get("fix_extra"):
            opts.ba_refine_extra_params = False
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


def run_isolated(job: dict, log_path) -> str | None:
    """Run recon.sfm._worker on ``job`` in a child process; None, or why it failed."""
    import os
    import subprocess
    from pathlib import Path

    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, "-m", "recon.sfm._worker", json.dumps(job)], env=env,
                          capture_output=True, text=True, check=False)
    Path(log_path).write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sig = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
        # the C++ reason ("what(): ... Check failed ..."), not the last frame of the abort's stack dump
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        why = next((ln for ln in lines if "what():" in ln or "Check failed" in ln), None) or next(
            (ln for ln in reversed(lines) if not ln.startswith(("@", "***", "PC:"))), "")
        return f"{sig}; {why.removeprefix('what():').strip()[:300]}"
    return None


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
