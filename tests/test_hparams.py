"""Hyperparameter sets: the paper's values, inheritance, typed overrides, errors."""

import pytest

from bnno import hparams
from bnno.errors import UsageError


def test_binarynet_sets_carry_the_papers_values():
    default = hparams.resolve("binarynet", "default")
    assert (default["epochs"], default["batch_size"], default["learning_rate"]) == (100, 256, 5e-3)
    assert (default["optimizer"], default["kernel_quantizer"], default["kernel_constraint"]) == (
        "adam", "ste_sign", "weight_clip")
    bop = hparams.resolve("binarynet", "bop")
    assert (bop["batch_size"], bop["threshold"], bop["gamma"], bop["learning_rate"]) == (100, 1e-6, 1e-3, 1e-2)
    assert bop["epochs"] == 100 and bop["filters"] == 128  # inherited from default
    sec52 = hparams.resolve("binarynet", "bop_sec52")
    assert (sec52["epochs"], sec52["batch_size"], sec52["threshold"], sec52["gamma"]) == (500, 50, 1e-8, 1e-4)
    assert (sec52["gamma_decay"], sec52["gamma_decay_factor"], sec52["gamma_decay_epochs"]) == ("step", 0.1, 100)


@pytest.mark.parametrize("model, epochs", [("binary_alexnet", 150), ("xnornet", 100), ("birealnet", 300)])
def test_imagenet_bop_sets_decay_gamma_and_learning_rate_linearly(model, epochs):
    bop = hparams.resolve(model, "bop")
    assert (bop["epochs"], bop["batch_size"], bop["threshold"]) == (epochs, 1024, 1e-8)
    assert (bop["gamma"], bop["gamma_decay"], bop["gamma_end"]) == (1e-4, "linear", 1e-6)
    assert (bop["learning_rate"], bop["learning_rate_decay"], bop["learning_rate_end"]) == (2.5e-3, "linear", 5e-6)
    assert hparams.resolve(model, "adam")["optimizer"] == "adam"


def test_xnornet_regularizes_its_full_precision_layers():
    assert hparams.resolve("xnornet", "bop")["kernel_regularization"] == 5e-7


def test_overrides_take_the_type_of_the_set():
    h = hparams.resolve("binarynet", "bop", "threshold=1e-6,gamma=1e-3,epochs=1,batch_size=8")
    assert (h["threshold"], h["gamma"], h["epochs"], h["batch_size"]) == (1e-6, 1e-3, 1, 8)
    assert isinstance(h["threshold"], float) and isinstance(h["epochs"], int)
    assert hparams.resolve("binarynet", "bop", "learning_rate=1")["learning_rate"] == 1.0


def test_lists_and_schedule_keys_can_be_overridden():
    h = hparams.resolve(
        "binarynet", "bop",
        "gamma_decay=piecewise,gamma_boundaries=[10, 20],gamma_factors=[1, 0.1, 0.01]",
    )
    assert h["gamma_boundaries"] == [10, 20] and h["gamma_factors"] == [1, 0.1, 0.01]


def test_parse_overrides_splits_on_top_level_commas_only():
    assert hparams.parse_overrides("a=1, b=[1, 2],c=x") == {"a": "1", "b": "[1, 2]", "c": "x"}
    assert hparams.parse_overrides("") == {}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ("treshold=1e-6", "Unknown hyperparameter 'treshold' for binarynet set 'bop'; valid choices are: batch_size"),
        ("treshold=1e-6", "Did you mean 'threshold'?"),
        ("epochs=1.5", "Hyperparameter epochs=1.5 must be a whole number"),
        ("gamma=fast", "Hyperparameter gamma=fast must be a number"),
        ("threshold", "Hyperparameter override 'threshold' is not of the form key=value."),
        ("optimizer=sgd", "Unknown optimizer 'sgd' in binarynet set 'bop'; valid choices are: adam, bop."),
        ("gamma_decay=step", "gamma_decay=step in binarynet set 'bop' also needs gamma_decay_factor and gamma_decay_epochs"),
        ("batch_size=0", "batch_size of binarynet set 'bop' must be a whole number of at least 1"),
        ("kernel_constraint=clip", "Unknown kernel_constraint 'clip'"),
        ("gamma_decay=piecewise,gamma_boundaries=[2, 1],gamma_factors=[1, 1, 1]", "must be increasing epochs"),
    ],
)
def test_bad_overrides_are_usage_errors_naming_them(overrides, message):
    with pytest.raises(UsageError) as error:
        hparams.resolve("binarynet", "bop", overrides)
    assert message in str(error.value)


def test_unknown_set_lists_the_sets_and_the_closest():
    with pytest.raises(UsageError) as error:
        hparams.resolve("binarynet", "bop_sec5")
    assert str(error.value) == (
        "Unknown hyperparameter set 'bop_sec5' for binarynet; valid choices are: "
        "bop, bop_sec52, default. Did you mean 'bop_sec52'?"
    )


def test_every_shipped_set_is_valid():
    for model in ("binarynet", "binary_alexnet", "xnornet", "birealnet"):
        for set_name in hparams.set_names(model):
            hparams.resolve(model, set_name)
