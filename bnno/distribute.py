"""The choice of tf.distribute strategy, made in one place.

- ``default``: one device.
- ``mirrored``: ``MirroredStrategy`` over the GPUs of this machine (over its logical
  CPUs when it has no GPU but several logical CPUs are configured).
- ``multi_worker``: ``MultiWorkerMirroredStrategy`` over several processes (hosts),
  described by ``TF_CONFIG`` or, when Slurm launched the tasks, by Slurm's own
  environment (``SlurmClusterResolver``).
- ``auto``: ``multi_worker`` when ``TF_CONFIG`` names several workers or Slurm launched
  several tasks; else ``mirrored`` when more than one GPU is visible; else ``default``.

The training loop runs unchanged under each. In a multi-worker run only the chief
writes where the user looks (``is_chief``).
"""

import json
import os
from typing import Optional

from bnno.errors import UsageError
from bnno.registry import unknown_choice_message

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def _tf_config() -> dict:
    try:
        return json.loads(os.environ.get("TF_CONFIG", "") or "{}")
    except json.JSONDecodeError:
        raise UsageError("The TF_CONFIG environment variable is not valid JSON.") from None


def cluster_source() -> Optional[str]:
    """``"tf_config"`` or ``"slurm"`` when this process is one of several workers."""
    cluster = _tf_config().get("cluster", {})
    if len(cluster.get("worker", [])) + len(cluster.get("chief", [])) > 1:
        return "tf_config"
    if "SLURM_PROCID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return "slurm"
    return None


def choose(name: str = "auto") -> str:
    """The concrete strategy name that ``name`` stands for on this machine."""
    if name not in STRATEGIES:
        raise UsageError(unknown_choice_message("strategy", name, list(STRATEGIES)))
    if name != "auto":
        return name
    if cluster_source() is not None:
        return "multi_worker"
    import tensorflow as tf

    return "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "default"


def strategy(name: str = "auto", echo=print):
    """The ``tf.distribute.Strategy`` that ``name`` stands for; prints which one and how
    many replicas. Create it before any other TensorFlow work (multi-worker
    collectives are configured at start-up)."""
    import tensorflow as tf

    name = choose(name)
    if name == "multi_worker":
        if cluster_source() == "slurm":
            resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
        else:
            resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        chosen = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    elif name == "mirrored":
        chosen = tf.distribute.MirroredStrategy(_mirrored_devices(tf))
    else:
        chosen = tf.distribute.get_strategy()
    replicas = chosen.num_replicas_in_sync
    if is_chief(chosen):
        echo(f"Strategy: {name} ({replicas} replica{'s' if replicas != 1 else ''})")
    return chosen


def _mirrored_devices(tf):
    """The GPUs (``None``: MirroredStrategy's own choice), or, on a machine without
    GPUs that was given several logical CPUs, those CPUs."""
    if tf.config.list_physical_devices("GPU"):
        return None
    cpus = tf.config.list_logical_devices("CPU")
    return [cpu.name for cpu in cpus] if len(cpus) > 1 else None


def is_chief(strategy) -> bool:
    """True for the one process that writes checkpoints, logs and exports: the chief,
    or worker 0 when the cluster has no chief, or the only process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and resolver.task_id == 0 and not has_chief


def is_multi_worker(strategy) -> bool:
    """True when this process is one of several workers (whose steps must agree)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return getattr(resolver, "task_type", None) is not None
