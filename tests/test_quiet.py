"""TensorFlow's start-up chatter is filtered out of stderr unless --verbose; real errors stay."""

import logging
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bnno import quiet
from bnno.cli import cli

# What importing TensorFlow 2.21 and listing GPUs printed on a CPU-only machine.
CHATTER = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796084760.444164    6387 port.cc:153] oneDNN custom operations are on. You may "
    "see slightly different numerical results due to floating-point round-off errors from "
    "different computation orders. To turn them off, set the environment variable "
    "`TF_ENABLE_ONEDNN_OPTS=0`.\n"
    "I0000 00:00:1796084760.444494    6387 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.\n"
    "I0000 00:00:1796084749.826210    6337 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.\n"
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    "TensorFlow with the appropriate compiler flags.\n"
)
CUINIT = (
    "E0000 00:00:1796084764.442665    6387 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
)
REAL_ERROR = "E0000 00:00:1796084764.5    6387 op_kernel.cc:1857] OP_REQUIRES failed: out of memory\n"


def test_known_chatter_is_dropped_and_everything_else_kept():
    text = CHATTER + REAL_ERROR + CUINIT + "Traceback (most recent call last):\n"
    assert quiet.drop_noise(text) == REAL_ERROR + "Traceback (most recent call last):\n"


def test_a_failed_cuinit_is_kept_where_there_is_a_cuda_driver():
    assert quiet.drop_noise(CUINIT) == CUINIT


def test_filtered_stderr_captures_descriptor_2_and_writes_back_what_is_not_noise(capfd):
    with quiet.filtered_stderr():
        os.write(2, (CHATTER + REAL_ERROR).encode())
    assert capfd.readouterr().err == REAL_ERROR


def test_filtered_stderr_restores_descriptor_2_when_the_body_fails(capfd):
    with pytest.raises(ImportError):
        with quiet.filtered_stderr():
            os.write(2, (CHATTER + "ImportError: libcudart.so.12\n").encode())
            raise ImportError("libcudart.so.12")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "ImportError: libcudart.so.12\nafter\n"


def test_tfds_warning_about_an_unprepared_version_folder_is_dropped(monkeypatch, caplog):
    from absl import logging as absl_logging

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    quiet.start_tensorflow()
    try:
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
        with caplog.at_level(logging.WARNING):
            # tensorflow_datasets/core/utils/file_utils.py, as tfds writes it
            absl_logging.warning("Variant folder %s has no %s", "/data/cifar10/3.0.2", "dataset_info.json")
            absl_logging.warning("Some other warning")
        assert [record.getMessage() for record in caplog.records] == ["Some other warning"]
    finally:
        logging.getLogger("absl").removeFilter(quiet.ABSL_FILTER)


@pytest.mark.parametrize("command", ["train", "list", "summary", "benchmark", "evaluate", "prepare"])
def test_commands_that_import_tensorflow_take_verbose(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert "--verbose" in result.output


def run_summary(*extra):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    return subprocess.run(
        [sys.executable, "-m", "bnno", "summary", "binarynet", "--dataset", "cifar10", *extra],
        capture_output=True, text=True, env=env, timeout=300,
    )


@pytest.mark.slow
def test_summary_prints_no_chatter_and_verbose_keeps_it():
    plain, verbose = run_summary(), run_summary("--verbose")
    assert plain.returncode == verbose.returncode == 0, plain.stderr + verbose.stderr
    assert [line for line in plain.stderr.splitlines() if quiet.is_noise(line)] == []
    assert "cuInit" not in plain.stderr or "Could not find cuda drivers" not in verbose.stderr
    assert "absl::InitializeLog" in verbose.stderr  # TensorFlow's own, kept with --verbose
    assert plain.stdout == verbose.stdout
    assert plain.stdout.splitlines()[-1] == "Size relative to float-32: 0.0323 (3.23%)"
