"""Distribution: the choice of strategy, and training on several replicas and workers.

Several replicas and workers run in fresh processes: logical CPU devices must be set
up before TensorFlow starts, and each worker of a cluster is its own process.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

from bnno import distribute
from bnno.errors import UsageError
from tests import instrumented
from tests.imagefolders import make_image_folder


@pytest.fixture
def no_cluster(monkeypatch):
    for name in ("TF_CONFIG", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_auto_is_one_device_without_gpus_or_cluster(no_cluster):
    assert distribute.choose("auto") == "default"
    assert distribute.choose("mirrored") == "mirrored"


def test_auto_is_multi_worker_when_tf_config_names_several_workers(no_cluster):
    cluster = {"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}
    no_cluster.setenv("TF_CONFIG", json.dumps(cluster))
    assert distribute.cluster_source() == "tf_config"
    assert distribute.choose("auto") == "multi_worker"


def test_auto_is_multi_worker_when_slurm_started_several_tasks(no_cluster):
    no_cluster.setenv("SLURM_PROCID", "1")
    no_cluster.setenv("SLURM_NTASKS", "4")
    assert distribute.cluster_source() == "slurm"
    assert distribute.choose("auto") == "multi_worker"
    no_cluster.setenv("SLURM_NTASKS", "1")  # one task: not a cluster
    assert distribute.choose("auto") == "default"


def test_bad_strategy_and_bad_tf_config_are_usage_errors(no_cluster):
    with pytest.raises(UsageError, match="Did you mean 'multi_worker'"):
        distribute.choose("multiworker")
    no_cluster.setenv("TF_CONFIG", "{not json")
    with pytest.raises(UsageError, match="TF_CONFIG environment variable is not valid JSON"):
        distribute.choose("auto")


def fake_strategy(task_type, task_id=0, cluster=None):
    resolver = types.SimpleNamespace(
        task_type=task_type, task_id=task_id,
        cluster_spec=lambda: types.SimpleNamespace(as_dict=lambda: cluster or {"worker": ["a", "b"]}),
    )
    return types.SimpleNamespace(cluster_resolver=resolver)


def test_the_chief_is_the_chief_or_else_worker_zero():
    assert distribute.is_chief(types.SimpleNamespace())  # one process
    assert distribute.is_chief(fake_strategy(None))
    assert distribute.is_chief(fake_strategy("worker", 0))
    assert not distribute.is_chief(fake_strategy("worker", 1))
    assert distribute.is_chief(fake_strategy("chief", 0, {"chief": ["a"], "worker": ["b"]}))
    assert not distribute.is_chief(fake_strategy("worker", 0, {"chief": ["a"], "worker": ["b"]}))


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("stripes"), train_per_class=20, validation_per_class=4)


MIRRORED_AGAINST_ONE_DEVICE = textwrap.dedent(
    """
    import json, pathlib, sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from bnno import hparams, lifecycle
    from bnno import training as train
    import bnno.nn  # noqa

    data, out = sys.argv[1], pathlib.Path(sys.argv[2])
    h = hparams.resolve("binarynet", "bop", "filters=8,dense_units=16,epochs=2,batch_size=20")
    histories = {}
    for strategy in ("default", "mirrored"):
        run = train.Run(model="binarynet", dataset=data, hparams_set="bop", hparams=h,
                        output_dir=out / strategy, strategy=strategy, verbose=0, tensorboard=False)
        histories[strategy] = lifecycle.train(run)["history"]
    one = keras.saving.load_model(out / "default" / "model.keras")
    two = keras.saving.load_model(out / "mirrored" / "model.keras")
    binary = identical = 0
    for a, b in zip(one.weights, two.weights):
        if getattr(a, "precision", None) == 1:
            binary += 1
            identical += int(np.array_equal(a.numpy(), b.numpy()))
        else:
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4, err_msg=a.path)
    print(json.dumps({"binary": binary, "identical": identical, "histories": histories}))
    """
)


@pytest.mark.slow
def test_two_replicas_train_like_one_device_with_the_same_global_batch(stripes, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_DETERMINISTIC_OPS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_AGAINST_ONE_DEVICE, str(stripes), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["binary"] == 9
    assert report["identical"] == 9  # every Bop kernel flipped exactly alike
    one, two = report["histories"]["default"], report["histories"]["mirrored"]
    for row_one, row_two in zip(one, two):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert float(row_one[key]) == pytest.approx(float(row_two[key]), rel=1e-3, abs=1e-4)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_two_workers(command, **environment):
    """Start ``command(index)`` as workers 0 and 1 of one cluster (``TF_CONFIG``; and
    ``environment``) and wait for both; returns [(exit code, stdout, stderr)]."""
    workers = [f"localhost:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        env = {
            **os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **environment,
            "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}),
        }
        env.pop("TF_DETERMINISTIC_OPS", None)  # collectives have no deterministic kernels
        processes.append(subprocess.Popen(command(index), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
    results = []
    for process in processes:
        try:
            stdout, stderr = process.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            raise
        results.append((process.returncode, stdout, stderr))
    return results


def run_signalled_workers(stripes, out, weights, signals, *options, temporary=None):
    """Two workers training into ``out``; worker i gets signal ``signals[i]`` = (name,
    after its Nth step) or None; ``temporary``: their TMPDIR. Returns [(exit code,
    stdout, stderr)]."""
    def command(index):
        name, at = signals[index] or (None, 0)
        # A worker keeps its final weights; SIGKILL is a preempted node, SIGTERM a clean stop.
        return [
            *instrumented.after_step(at, name, weights / f"weights{index}.npz"),
            "train", "binarynet", "--dataset", str(stripes), "--hparams-set", "bop",
            "--hparams", "filters=8,dense_units=16,epochs=3,batch_size=20", "--output-dir", str(out), *options,
        ]

    return run_two_workers(command, **({"TMPDIR": str(temporary)} if temporary else {}))


@pytest.mark.slow
def test_two_workers_train_alike_only_the_chief_writes_and_killed_or_signalled_they_resume_alike(stripes, tmp_path):
    """60 images in global batches of 20: 3 steps an epoch, 3 epochs; a checkpoint every
    2 steps (global steps 2, 4 and 8; 6 is the end of epoch 2). Killed inside an epoch,
    then stopped by a signal to one worker, the cluster ends exactly where an
    uninterrupted one does."""
    whole, weights_whole = tmp_path / "whole", tmp_path / "weights-whole"
    weights_whole.mkdir()
    for code, _, stderr in run_signalled_workers(stripes, whole, weights_whole, [None, None]):
        assert code == 0, stderr[-3000:]

    out, weights = tmp_path / "run", tmp_path / "weights"
    weights.mkdir()
    # Both nodes lost after step 5 (epoch 2, step 2): the newest checkpoint is step 4.
    killed = run_signalled_workers(stripes, out, weights, [("SIGKILL", 5)] * 2, "--checkpoint-every", "2")
    assert [code for code, _, _ in killed] == [-signal.SIGKILL] * 2, [e[-1500:] for _, _, e in killed]
    # (step 2's was dropped when epoch 1's own checkpoint was written)
    assert sorted(p.name for p in (out / "checkpoints" / "in_epoch").glob("*.index")) == ["step-4.index"]

    # Resumed; then worker 1 alone gets SIGTERM after its first step (step 5). Its stop
    # request reaches the chief with step 6, the last of epoch 2: both save it and exit 75.
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    stopped = run_signalled_workers(stripes, out, weights, [None, ("SIGTERM", 1)], "--checkpoint-every", "2",
                                    temporary=temporary)
    assert [code for code, _, _ in stopped] == [75, 75], [e[-1500:] for _, _, e in stopped]
    chief_out, chief_err = stopped[0][1], stopped[0][2]
    assert "Resuming in epoch 2 of 3, after step 1 of 3 (checkpoints/in_epoch/step-4)." in chief_out
    assert chief_err.strip().splitlines()[-1].startswith(
        "Stopped (another worker was signalled) at epoch 2, step 3 of 3, after saving")
    assert stopped[1][2].strip().splitlines()[-1].startswith("Stopped (SIGTERM received) at epoch 2, step 3 of 3")
    assert (out / "checkpoints" / "in_epoch" / "step-6.index").exists()
    assert not (out / "checkpoints" / "ckpt-2.index").exists()  # epoch 2 is not validated yet
    assert not list(temporary.iterdir())  # worker 1 removed its temporary checkpoint folder

    finished = run_signalled_workers(stripes, out, weights, [None, None], "--checkpoint-every", "2")
    for code, _, stderr in finished:
        assert code == 0, stderr[-3000:]
    assert "Resuming in epoch 2 of 3, after step 3 of 3 (checkpoints/in_epoch/step-6)." in finished[0][1]

    def history(run):
        rows = (run / "history.csv").read_text().splitlines()
        return [",".join(row.split(",")[:-1]) for row in rows]  # without wall_seconds

    chief_output, worker_output = finished[0][1], finished[1][1]
    assert "Strategy: multi_worker (2 replicas)" in chief_output
    assert "Strategy" not in worker_output  # only the chief reports
    # Exactly the chief's files, each epoch once in the history.
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("events.out.tfevents."))
    assert names == sorted([
        "binary.weights.h5", "checkpoints", "history.csv", "hparams.yaml", "model.keras",
        "summary.txt", "train", "validation",
    ])
    assert len(list(out.glob("events.out.tfevents.*"))) == 1  # the chief's HParams summary
    assert [row.split(",")[0] for row in history(out)[1:]] == ["1", "2", "3"]

    assert history(out) == history(whole)
    worker_weights = [np.load(weights / f"weights{index}.npz") for index in range(2)]
    for name in worker_weights[0].files:  # the workers agree
        np.testing.assert_array_equal(worker_weights[0][name], worker_weights[1][name])
    for index in range(2):
        expected, actual = np.load(weights_whole / f"weights{index}.npz"), np.load(weights / f"weights{index}.npz")
        assert len(expected.files) == len(actual.files) > 0
        for name in expected.files:
            np.testing.assert_array_equal(expected[name], actual[name])
