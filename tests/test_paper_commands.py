"""The paper's command lines (its README) run as written, for every model and set.

The data are tfds's mocked examples (random images with the real data sets' shapes),
so this checks that each configuration trains end to end, not what it reaches. Each
command is the paper's, plus ``epochs=1`` and ``--max-steps`` to keep it short, and,
for ImageNet, a small batch (the sets' 1024 would need 1024 mocked images).

Binary AlexNet's and XNOR-Net's classifiers are narrowed (``narrow_classifiers``): their
4096-wide hidden layers hold about 58 M of their 62 M parameters, and a run writes them
three times (a checkpoint, ``model.keras``, ``binary.weights.h5``: 2 GB a test at full
width). tests/models and tests/test_cli_commands.py check the full-size models.

Every test here trains: the slow tier (``-m slow``).
"""

import csv
import importlib
import shlex

import pytest
import yaml
from click.testing import CliRunner
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bnno.cli import cli
from bnno.data.testing import mock_tfds
from tests.imagefolders import make_image_folder

pytestmark = pytest.mark.slow

PAPER_CIFAR10 = [
    # Section 5.1, the hyperparameter analysis
    "bnno train binarynet --dataset cifar10 --preprocess-fn resize_and_flip "
    "--hparams-set bop --hparams threshold=1e-6,gamma=1e-3",
    # Section 5.2, 91.3 % on CIFAR-10
    "bnno train binarynet --dataset cifar10 --preprocess-fn resize_and_flip --hparams-set bop_sec52",
    # Section 5.2's latent-weight baseline, 90.9 %: Adam with Xavier learning-rate scaling
    "bnno train binarynet --dataset cifar10 --preprocess-fn resize_and_flip --hparams-set adam_sec52",
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


@pytest.fixture
def narrow_classifiers(monkeypatch):
    """Builds Binary AlexNet's and XNOR-Net's 4096-wide layers 64 wide, everything else as
    written: a run then writes about 60 MB instead of 2 GB."""

    def narrowed(layer):
        def build(width, *args, **kwargs):
            return layer(64 if width == 4096 else width, *args, **kwargs)

        return build

    for module, name in (("binary_alexnet", "QuantDense"), ("xnornet", "QuantConv2D")):
        module = importlib.import_module(f"bnno.models.{module}")
        monkeypatch.setattr(module, name, narrowed(getattr(module, name)))


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


@pytest.mark.parametrize("command", PAPER_CIFAR10, ids=["sec51", "sec52", "sec52-adam", "default"])
def test_the_papers_cifar10_commands_run_as_written(command, tmp_path):
    # 256 examples: enough for the largest batch of the sets (256, the default set).
    with mock_tfds(["cifar10"], num_examples=256, splits=("train", "test")):
        row = run(with_extra_hparams(command, "epochs=1"), tmp_path)
    assert 0.0 <= float(row["val_accuracy"]) <= 1.0
    recorded = yaml.safe_load((tmp_path / "run" / "hparams.yaml").read_text())["hparams"]
    assert recorded.get("xavier_learning_rate_scaling", False) == ("adam_sec52" in command)


@pytest.mark.parametrize("command", PAPER_IMAGENET, ids=lambda c: "-".join(c.split()[2:7:4]))
def test_the_papers_imagenet_commands_run_for_every_model_and_set(command, tmp_path, narrow_classifiers):
    with mock_tfds(["imagenet2012"], num_examples=4, splits=("train", "validation")):
        row = run(with_extra_hparams(command, "epochs=1,batch_size=2"), tmp_path)
    assert 0.0 <= float(row["val_top5_accuracy"]) <= 1.0


# --- "A Bop and Beyond" (Suarez-Ramirez et al., 2021, arXiv:2104.05124) -------------------

# Every command line of its code's README (github.com/CuauSuarez/Bop2ndOrder), copied as
# printed there, line continuations included.
BOP2ND_README_CIFAR10 = {
    "train": "bnno train binarynet --dataset cifar10",
    "5.1.1-batch-biased": """bnno train binarynet_batch \\
    --dataset cifar10 \\
    --preprocess-fn resize_and_flip \\
    --hparams-set bop2ndOrder \\
    --hparams threshold=1e-6,gamma=1e-7,sigma=1e-3,epochs=150 \\
    --tensorboard=True""",
    "5.1.1-batch-unbiased": """bnno train binarynet_batch \\
    --dataset cifar10 \\
    --preprocess-fn resize_and_flip \\
    --hparams-set bop2ndOrder_unbiased \\
    --hparams threshold=1e-6,gamma=1e-7,sigma=1e-3,epochs=150 \\
    --tensorboard=True""",
    "5.1.1-layer-biased": """bnno train binarynet \\
    --dataset cifar10 \\
    --preprocess-fn resize_and_flip \\
    --hparams-set bop2ndOrder \\
    --hparams threshold=1e-6,gamma=1e-7,sigma=1e-3,epochs=150 \\
    --tensorboard=True""",
    "5.1.1-layer-unbiased": """bnno train binarynet \\
    --dataset cifar10 \\
    --preprocess-fn resize_and_flip \\
    --hparams-set bop2ndOrder_unbiased \\
    --hparams threshold=1e-6,gamma=1e-7,sigma=1e-3,epochs=150 \\
    --tensorboard=True""",
    "5.1.3-ablation": """bnno train binarynet_batch \\
    --dataset cifar10 \\
    --preprocess-fn resize_and_flip \\
    --hparams-set bop2ndOrder_unbiased \\
    --hparams threshold=1e-6,gamma=1e-7,sigma=1e-3,epochs=100 \\
    --tensorboard=True""",
    "5.1.4-unbiased": """bnno train binarynet_batch \\
    --dataset cifar10 \\
    --preprocess-fn resize_and_flip \\
    --hparams-set bop2ndOrder_unbiased_testExp \\
    --hparams epochs_decay=100,threshold=1e-6,threshold_decay=0.1,gamma=1e-7,gamma_decay=0.1,sigma=1e-3,sigma_decay=0.1 \\
    --tensorboard=True""",
    "5.1.4-biased": """bnno train binarynet_batch \\
    --dataset cifar10 \\
    --preprocess-fn resize_and_flip \\
    --hparams-set bop2ndOrder_testExp \\
    --hparams epochs_decay=100,threshold=1e-6,threshold_decay=0.1,gamma=1e-7,gamma_decay=0.1,sigma=1e-3,sigma_decay=0.1 \\
    --tensorboard=True""",
    "5.2-unbiased": """bnno train binarynet_batch \\
    --dataset cifar10 \\
    --preprocess-fn resize_and_flip \\
    --hparams-set bop2ndOrder_unbiased_CIFAR \\
    --tensorboard=True""",
    "5.2-biased": """bnno train binarynet_batch \\
    --dataset cifar10 \\
    --preprocess-fn resize_and_flip \\
    --hparams-set bop2ndOrder_CIFAR \\
    --tensorboard=True""",
}
BOP2ND_README_IMAGENET = {
    "5.3-xnornet": "bnno train xnornet_batch --dataset imagenet2012 --hparams-set bop2ndOrder_ImageNet",
    "5.3-birealnet": "bnno train birealnet_batch --dataset imagenet2012 --hparams-set bop2ndOrder_ImageNet",
}


def as_written(command: str, folder, extra: dict) -> list:
    """The arguments of a README command (without the program name), with the data set
    swapped for ``folder`` and ``extra`` merged into its ``--hparams`` (replacing keys
    it gives, such as epochs)."""
    args = shlex.split(command.replace("\\\n", " "))[1:]
    args[args.index("--dataset") + 1] = str(folder)
    if "--hparams" not in args:
        args += ["--hparams", ""]
    i = args.index("--hparams") + 1
    overrides = dict(item.split("=", 1) for item in args[i].split(",") if item)
    args[i] = ",".join(f"{k}={v}" for k, v in {**overrides, **extra}.items())
    return args


@pytest.fixture(scope="module")
def cifar_like(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("cifar"), size=32, train_per_class=4, validation_per_class=2)


@pytest.mark.parametrize("command", BOP2ND_README_CIFAR10.values(), ids=BOP2ND_README_CIFAR10.keys())
def test_bop_and_beyonds_cifar10_commands_run_as_written(command, cifar_like, tmp_path):
    out = tmp_path / "run"
    args = as_written(command, cifar_like, dict(epochs=1, batch_size=6, filters=8, dense_units=16))
    result = CliRunner().invoke(cli, args + ["--max-steps", "1", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output[-3000:]
    assert (out / "train").is_dir()  # TensorBoard events, as --tensorboard=True asks
    with open(out / "history.csv", newline="") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1"]
    recorded = yaml.safe_load((out / "hparams.yaml").read_text())["hparams"]
    if recorded["optimizer"] == "bop2nd":  # TensorBoard follows sigma's schedule too
        events = EventAccumulator(str(out / "train")).Reload().Tags()
        assert {"epoch_gamma", "epoch_sigma", "epoch_flip_ratio"} <= set(events["tensors"])
    if "epochs_decay=100" in command:  # section 5.1.4: everything times 0.1 every 100 epochs
        for name in ("threshold", "gamma", "sigma", "learning_rate"):
            schedule = [recorded[f"{name}_decay{part}"] for part in ("", "_factor", "_epochs")]
            assert schedule == ["step", 0.1, 100], name


@pytest.mark.parametrize("command", BOP2ND_README_IMAGENET.values(), ids=BOP2ND_README_IMAGENET.keys())
def test_bop_and_beyonds_imagenet_commands_run_as_written(command, tmp_path, narrow_classifiers):
    # XNOR-Net's 6x6 "valid" convolution needs ImageNet-sized images; Bi-Real Net takes any.
    size = 224 if "xnornet" in command else 64
    folder = make_image_folder(tmp_path / "imagenet", size=size, train_per_class=1, validation_per_class=1,
                               classes=("horizontal", "vertical"))
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli, as_written(command, folder, dict(epochs=1, batch_size=2)) + ["--max-steps", "1", "--output-dir", str(out)]
    )
    assert result.exit_code == 0, result.output[-3000:]
    assert (out / "model.keras").exists()
