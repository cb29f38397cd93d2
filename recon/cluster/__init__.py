"""Past one machine: recon's stages as Dask task graphs (docs/cluster.md).

``open_cluster(ClusterOptions(workers=2), out)`` starts (or attaches to) a checked Dask client;
``Cluster.map(stage, tasks, root)`` runs pure tasks with done-markers; ``recon.cluster.sfm``
holds the SfM task graph (sharded feature extraction, block matching, partitioned mapping).
Dask is imported inside the functions that use it.
"""

from recon.cluster.engine import (
    Cluster,
    ClusterError,
    ClusterOptions,
    StageFacts,
    Task,
    input_hash,
    open_cluster,
    package_versions,
    run_tasks,
)

__all__ = ["Cluster", "ClusterError", "ClusterOptions", "StageFacts", "Task", "input_hash",
           "open_cluster", "package_versions", "run_tasks"]
