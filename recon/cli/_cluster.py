"""The cluster options every verb that can run past one machine takes (docs/cluster.md):
``--workers N`` (a local Dask cluster of N processes) or ``--cluster ADDRESS`` /
``--scheduler-file FILE`` (a running Dask scheduler). Without them a verb runs in one process."""

from __future__ import annotations

import argparse

__all__ = ["add_cluster", "cluster_options"]


def add_cluster(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("cluster (Dask; docs/cluster.md)")
    where = g.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="run the stages as tasks on a local Dask cluster of N worker processes")
    where.add_argument("--cluster", default=None, metavar="ADDRESS",
                       help="run the stages as tasks on a running Dask scheduler (tcp://host:8786)")
    where.add_argument("--scheduler-file", default=None, metavar="FILE",
                       help="... or the scheduler named by this file (dask scheduler --scheduler-file)")
    g.add_argument("--cluster-timeout", type=float, default=30.0, metavar="S",
                   help="seconds to wait for the scheduler and its first worker (default 30)")
    g.add_argument("--retries", type=int, default=2, help="re-runs of a task that raised (default 2)")


def cluster_options(args: argparse.Namespace):
    """recon.cluster.ClusterOptions from the parsed options, or None (no cluster asked for)."""
    if args.workers is None and args.cluster is None and args.scheduler_file is None:
        return None
    from recon.cluster import ClusterOptions

    return ClusterOptions(workers=args.workers, address=args.cluster, scheduler_file=args.scheduler_file,
                          timeout_s=args.cluster_timeout, retries=args.retries)
