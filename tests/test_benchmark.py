"""bnno benchmark: reports training and pipeline throughput (figures, not timed tests)."""

import json

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


def test_benchmark_of_an_imagenet_model_uses_imagenet_shapes():
    result = CliRunner().invoke(cli, [
        "benchmark", "birealnet", "--hparams-set", "bop", "--batch-size", "2", "--steps", "1",
        "--warmup", "1", "--json",
    ])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["dataset"] == "imagenet2012" and figures["images_per_second"] > 0
