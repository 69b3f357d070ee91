"""bnno benchmark: reports training and pipeline throughput (figures, not timed tests)."""

import json

import pytest
from click.testing import CliRunner

from bnno.cli import cli


def test_benchmark_reports_images_per_second_as_json():
    result = CliRunner().invoke(cli, [
        "benchmark", "binarynet", "--hparams-set", "bop", "--hparams", "filters=8,dense_units=16",
        "--batch-size", "8", "--steps", "2", "--warmup", "1", "--pipeline",
        "--preprocess-fn", "resize_and_flip", "--binary-conv", "bfloat16", "--json",
    ])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["model"] == "binarynet" and figures["dataset"] == "cifar10"
    assert figures["backend"] == "tensorflow"
    assert figures["batch_size"] == 8 and figures["steps"] == 2
    assert figures["images_per_second"] > 0 and figures["pipeline_images_per_second"] > 0
    assert figures["preprocess"] == "resize_and_flip"
    assert figures["binary_conv"] == "bfloat16"
    assert "images/s training" in result.output
    assert "bfloat16 binary convolutions" in result.output


@pytest.mark.slow
def test_benchmark_of_an_imagenet_model_uses_imagenet_shapes():
    result = CliRunner().invoke(cli, [
        "benchmark", "birealnet", "--hparams-set", "bop", "--batch-size", "2", "--steps", "1",
        "--warmup", "1", "--json",
    ])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["dataset"] == "imagenet2012" and figures["images_per_second"] > 0


def test_the_training_step_is_traced_with_ste_sign_fused(monkeypatch):
    # bnno.nn.fused applies only inside the Trainer's steps (and never eagerly): the
    # benchmark's step, the one `bnno train` runs, must take it.
    from bnno.nn import fused, quantizers

    shapes = []
    compiled = fused.compiled

    def recording(function):
        def call(*arguments):
            if function is quantizers.binary_sign:
                shapes.append(tuple(arguments[0].shape))
            return compiled(function)(*arguments)

        return call

    monkeypatch.setattr(fused, "compiled", recording)
    result = CliRunner().invoke(cli, [
        "benchmark", "binarynet", "--hparams-set", "bop", "--hparams", "filters=8,dense_units=16",
        "--batch-size", "4", "--steps", "1", "--warmup", "1", "--binary-conv", "float32", "--json",
    ])
    assert result.exit_code == 0, result.output
    # The inputs of BinaryNet's eight binarized layers (the first layer's are not; the
    # last two dense layers' inputs have the same shape).
    assert set(shapes) == {(4, 30, 30, 8), (4, 15, 15, 8), (4, 15, 15, 16), (4, 7, 7, 16),
                           (4, 7, 7, 32), (4, 288), (4, 16)}
