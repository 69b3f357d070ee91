"""The paper's command lines (its README) run as written, for every model and set.

The data are tfds's mocked examples (random images with the real data sets' shapes),
so this checks that each configuration trains end to end, not what it reaches. Each
command is the paper's, plus ``epochs=1`` and ``--max-steps`` to keep it short, and,
for ImageNet, a small batch (the sets' 1024 would need 1024 mocked images).
"""

import csv
import shlex

import pytest
from click.testing import CliRunner

from bnno.cli import cli
from bnno.data.testing import mock_tfds

PAPER_CIFAR10 = [
    # Section 5.1, the hyperparameter analysis
    "bnno train binarynet --dataset cifar10 --preprocess-fn resize_and_flip "
    "--hparams-set bop --hparams threshold=1e-6,gamma=1e-3",
    # Section 5.2, 91.3 % on CIFAR-10
    "bnno train binarynet --dataset cifar10 --preprocess-fn resize_and_flip --hparams-set bop_sec52",
    # The latent-weight baseline: the set the paper's plain command trained (its code
    # defaulted to it; bnno defaults to bop, and to resize_and_flip for cifar10)
    "bnno train binarynet --dataset cifar10 --hparams-set default",
]
PAPER_IMAGENET = [
    # Section 5.3
    "bnno train alexnet --dataset imagenet2012 --hparams-set bop",
    "bnno train xnornet --dataset imagenet2012 --hparams-set bop",
    "bnno train birealnet --dataset imagenet2012 --hparams-set bop",
    # The latent-weight (Adam) baselines
    "bnno train binary_alexnet --dataset imagenet2012 --hparams-set adam",
    "bnno train xnornet --dataset imagenet2012 --hparams-set adam",
    "bnno train birealnet --dataset imagenet2012 --hparams-set adam",
]


def with_extra_hparams(command: str, extra: str) -> list:
    args = shlex.split(command)[1:]  # without the program name
    if "--hparams" in args:
        i = args.index("--hparams") + 1
        args[i] = f"{args[i]},{extra}"
    else:
        args += ["--hparams", extra]
    return args


def run(args, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli, args + ["--max-steps", "1", "--output-dir", str(out), "--no-tensorboard"]
    )
    assert result.exit_code == 0, result.output[-3000:]
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["1"]
    assert (out / "model.keras").exists() and (out / "binary.weights.h5").exists()
    return rows[0]


@pytest.mark.parametrize("command", PAPER_CIFAR10, ids=["sec51", "sec52", "default"])
def test_the_papers_cifar10_commands_run_as_written(command, tmp_path):
    # 256 examples: enough for the largest batch of the sets (256, the default set).
    with mock_tfds(["cifar10"], num_examples=256, splits=("train", "test")):
        row = run(with_extra_hparams(command, "epochs=1"), tmp_path)
    assert 0.0 <= float(row["val_accuracy"]) <= 1.0


@pytest.mark.parametrize("command", PAPER_IMAGENET, ids=lambda c: "-".join(c.split()[2:7:4]))
def test_the_papers_imagenet_commands_run_for_every_model_and_set(command, tmp_path):
    with mock_tfds(["imagenet2012"], num_examples=4, splits=("train", "validation")):
        row = run(with_extra_hparams(command, "epochs=1,batch_size=2"), tmp_path)
    assert 0.0 <= float(row["val_top5_accuracy"]) <= 1.0
