"""`recon train splat DATA -o OUT`: the Gaussian-splatting sub-verb (discovered by recon/cli/verb_train.py).

Light at import: argparse only; torch and the trainer are imported inside run()."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "splat"
HELP = "3D Gaussian splatting (gsplat on CUDA, a PyTorch rasterizer on CPU)"
ORDER = 10
CLUSTER = True  # --workers / --cluster / --scheduler-file run the chunks of --chunks as Dask tasks
DESCRIPTION = """\
Train 3D Gaussians on posed images and write OUT/splat.ply (standard 3DGS layout: SuperSplat,
gsplat and the Inria viewers read it), OUT/checkpoint.pt, OUT/renders/test/*.png and
OUT/report.json (test PSNR / SSIM / LPIPS-or-null, steps, seconds, num_gaussians, device,
peak memory).

DATA is what `recon sfm` or recon.synth wrote (a folder with sparse/0 and its photos, or a
transforms.json), or a COLMAP model folder (recon.io.detect decides). Cameras with lens
distortion (SIMPLE_RADIAL from `recon sfm`, OPENCV, fisheye) are undistorted on load to a
pinhole camera; the images are cached in OUT/undistorted/. Every 8th image (sorted by name) is
held out for the test metrics, as in the 3DGS protocol; the split is recorded in report.json
(`recon render --cameras test` renders exactly those views).

Presets: 'default' = gsplat's 7k-step schedule; 'long' = the paper's 30k; 'cpu' = 3k steps with
capped growth for small images on a CPU. 'auto' picks 'cpu' on a CPU and 'default' on CUDA.

Examples:
  recon train splat out/sfm -o out/splat --steps 3000 --resolution-scale 0.25
  recon train splat data/lego -o out/lego --strategy mcmc --device cuda --viewer
  recon train splat out/sfm -o out/splat --steps 7000 --resume     # continue a run
  recon sfm photos -o out && recon train splat out -o splat --resolution-scale 0.125 --max-seconds 120
  recon train splat out/sfm -o out/splat --chunks 4 --workers 2   # 4 ground cells, 2 processes
  torchrun --standalone --nproc-per-node 4 -m recon train splat out/sfm -o out/splat --distributed

--chunks N cuts the scene into N ground-plane cells (expanded borders, views chosen by what they
see), trains a coarse model of the whole scene (--coarse-steps, default half of --steps), then
each chunk as its own run of --steps steps from the coarse Gaussians in its cell (on the cluster
of --workers / --cluster when given, else one after another) and merges each cell's own
Gaussians into one OUT/splat.ply; OUT/coarse/ and OUT/chunks/<k>/ hold the runs (docs/cluster.md).

--distributed trains ONE model with every process of a torchrun group: each owns a shard of the
Gaussians and renders its own view each step with all of them (gsplat's distributed mode on
CUDA, which needs CUDA + NCCL and one GPU per process; gathered shards and gloo on CPUs). Give
--steps (no --max-seconds); OUT/ranks/<r>/ holds the other processes' checkpoints.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="dataset folder (transforms.json or sparse/0 + images/)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    parser.add_argument("--preset", choices=["auto", "default", "long", "cpu"], default="auto",
                        help="hyper-parameter preset (default: auto = cpu on a CPU, default on CUDA)")
    parser.add_argument("--steps", type=int, help="total optimisation steps (overrides the preset)")
    parser.add_argument("--resolution-scale", type=float, default=1.0, metavar="S",
                        help="resize images by S in (0, 1] (e.g. 0.25 for quick CPU runs); default 1")
    parser.add_argument("--strategy", choices=["default", "mcmc"], default="default",
                        help="densification: 3DGS clone/split/prune (default) or 3DGS-MCMC")
    parser.add_argument("--max-gaussians", type=int, metavar="N",
                        help="cap on the number of Gaussians (default strategy: growth cap; mcmc: cap_max)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto = cuda when torch sees a GPU")
    parser.add_argument("--backend", choices=["auto", "torch", "gsplat"], default="auto",
                        help="rasterizer: auto = gsplat on CUDA when installed, else our PyTorch one")
    parser.add_argument("--init", choices=["auto", "sfm", "random"], default="auto",
                        help="initial Gaussians: the model's 3D points (sfm), random in a box, or auto")
    parser.add_argument("--sh-degree", type=int, choices=[0, 1, 2, 3], help="max SH degree (default 3)")
    parser.add_argument("--background", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="background colour in [0, 1] (default black)")
    parser.add_argument("--test-every", type=int, default=8, metavar="K",
                        help="hold out every K-th image for testing (0: none); default 8")
    parser.add_argument("--max-views", type=int, metavar="N", help="use only the first N images")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads for torch (default: the cores other processes leave free, "
                             "re-checked every 15 s during the run: oversubscribed OpenMP threads are "
                             "very slow)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the PyTorch compositor: only used where the fused C++ CPU "
                             "rasterizer cannot be built (it is the default on a CPU) or on CUDA without gsplat")
    parser.add_argument("--max-seconds", type=float, metavar="S",
                        help="stop after S seconds of training, then evaluate and export")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--viewer", action="store_true",
                        help="live view in the browser (viser, http://127.0.0.1:8080) while training")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--chunks", type=int, metavar="N",
                        help="train N ground-plane chunks (each --steps steps) and merge them into one "
                             "splat.ply; with --workers / --cluster the chunks run as Dask tasks")
    parser.add_argument("--distributed", action="store_true",
                        help="one model trained by every process of a torchrun group (gsplat's distributed "
                             "mode on CUDA + NCCL, one GPU per process; gloo on CPUs); see below")
    parser.add_argument("--coarse-steps", type=int, metavar="N",
                        help="with --chunks: steps of the coarse model of the whole scene the chunks start "
                             "from (default: half of --steps; 0: none, the chunks start from the SfM points)")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import sys

    import torch

    from render.splat.trainer import TrainConfig, train

    def log(msg):
        print(f"[splat] {msg}", file=sys.stderr)

    preset = args.preset
    if preset == "auto":
        on_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
        preset = "default" if on_cuda else "cpu"
    cfg = TrainConfig.preset(preset)
    over = {"resolution_scale": args.resolution_scale, "strategy": args.strategy, "device": args.device,
            "backend": args.backend, "init": args.init, "test_every": args.test_every, "seed": args.seed,
            "max_views": args.max_views, "compile": args.compile, "max_seconds": args.max_seconds}
    if args.steps is not None:
        over["steps"] = args.steps
    if args.sh_degree is not None:
        over["sh_degree"] = args.sh_degree
    if args.background is not None:
        over["background"] = tuple(args.background)
    cfg = dataclasses.replace(cfg, **over)
    if args.max_gaussians is not None:
        cfg = dataclasses.replace(cfg, densify=dataclasses.replace(cfg.densify, max_gaussians=args.max_gaussians),
                                  mcmc=dataclasses.replace(cfg.mcmc, cap_max=args.max_gaussians))
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads: expected >= 1, got {args.threads}")
    log(f"preset {preset}")
    # the cluster options are read by recon's CLI (args.cluster_options): render never imports it
    copts = args.cluster_options(args) if getattr(args, "cluster_options", None) else None
    if args.chunks is not None:
        if args.distributed:
            raise ValueError("--distributed: not with --chunks (each chunk is its own model)")
        return _run_chunked(args, cfg, copts, log)
    if args.coarse_steps is not None:
        raise ValueError("--coarse-steps: only with --chunks N")
    if copts is not None:
        raise ValueError("--workers / --cluster / --scheduler-file: a single training run is one process; "
                         "use them with --chunks N")
    if args.distributed:
        return _run_distributed(args, cfg, log)
    # The live viewer is handed in by recon's CLI (args.live_viewer): render never imports viewer.
    live = getattr(args, "live_viewer", None) if args.viewer else None
    result = train(args.data, args.output, cfg, resume=args.resume, progress=not args.quiet,
                   live=live, log=log, data_path=args.data,
                   threads=args.threads if args.threads is not None else "auto")
    r = result.report
    print(f"splat: {r['num_gaussians']} Gaussians, {r['steps']} steps in {r['seconds']:.1f} s; "
          f"{r['eval_split']} PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f} -> {args.output}/splat.ply")
    return 0


def _run_chunked(args, cfg, copts, log) -> int:
    from render.splat.chunks import ChunkOptions, train_chunked

    if args.resume or args.viewer:
        raise ValueError("--chunks: --resume and --viewer do not apply (finished chunks are reused on a re-run)")
    options = ChunkOptions(chunks=args.chunks, coarse_steps=args.coarse_steps)
    threads = args.threads if args.threads is not None else "auto"
    if copts is None:
        result = train_chunked(args.data, args.output, cfg, options, log=log, threads=threads)
    else:
        from recon.cluster.engine import open_cluster

        import torch

        gpu = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        with open_cluster(copts, args.output, need_gpu=gpu) as cluster:
            result = train_chunked(args.data, args.output, cfg, options, cluster=cluster, log=log, threads=threads)
    r = result.report
    print(f"splat: {len(result.plan.cells)} chunks merged, {r['num_gaussians']} Gaussians, {r['steps']} steps "
          f"in {r['seconds']:.1f} s; {r['eval_split']} PSNR {r['psnr']:.2f} dB -> {args.output}/splat.ply")
    return 0


def _run_distributed(args, cfg, log) -> int:
    from render.splat.distributed import train_distributed

    if args.viewer:
        raise ValueError("--distributed: --viewer is not supported (one process rendering alone would stall the "
                         "others)")
    result = train_distributed(args.data, args.output, cfg, resume=args.resume, progress=not args.quiet, log=log,
                               data_path=args.data)
    r = result.report
    if Path(result.out_dir) == Path(args.output):  # process 0 (the others write OUT/ranks/<r>)
        print(f"splat: {r['num_gaussians']} Gaussians over {r['distributed']['world_size']} processes, "
              f"{r['steps']} steps in {r['seconds']:.1f} s; {r['eval_split']} PSNR {r['psnr']:.2f} dB "
              f"-> {args.output}/splat.ply")
    return 0
