"""Hyperparameter sets: the paper's values, inheritance, typed overrides, errors."""

import pathlib
import random
import subprocess
import sys
import textwrap
from importlib import resources

import pytest

import bnno
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
        ("optimizer=sgd", "Unknown optimizer 'sgd' in binarynet set 'bop'; valid choices are: adam, bop, bop2nd."),
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
        "adam_sec52, bop, bop2ndOrder, bop2ndOrder_testExp, bop2ndOrder_unbiased, bop2ndOrder_unbiased_testExp, "
        "bop_sec52, default. Did you mean 'bop_sec52'?"
    )


def test_every_shipped_set_is_valid():
    for model in hparams.model_names():
        for set_name in hparams.set_names(model):
            hparams.resolve(model, set_name)


# --- "A Bop and Beyond" (Suarez-Ramirez et al., 2021): its sets and its way of writing decays --


def test_bop2ndorder_sets_carry_the_values_of_that_papers_code():
    def values(model, set_name, *keys):
        resolved = hparams.resolve(model, set_name)
        return tuple(resolved[key] for key in keys)

    keys = ("optimizer", "normalization", "bias_correction", "epochs", "batch_size", "threshold", "gamma", "sigma")
    assert values("binarynet", "bop2ndOrder", *keys) == ("bop2nd", "layer", False, 100, 100, 1e-6, 1e-7, 1e-3)
    assert values("binarynet", "bop2ndOrder_unbiased", *keys) == ("bop2nd", "layer", True, 100, 100, 1e-6, 1e-7, 1e-3)
    assert values("binarynet_batch", "bop2ndOrder", *keys) == ("bop2nd", "batch", False, 100, 100, 1e-5, 1e-7, 1e-3)
    assert values("binarynet_batch", "bop2ndOrder_unbiased_testExp", *keys) == (
        "bop2nd", "batch", True, 350, 50, 1e-6, 1e-7, 1e-3)
    assert values("binarynet", "bop2ndOrder_testExp", "epochs", "threshold") == (300, 1e-5)
    for name in ("threshold", "gamma", "sigma", "learning_rate"):
        schedule = values("binarynet_batch", "bop2ndOrder_testExp", *(f"{name}_decay{p}" for p in ("", "_factor", "_epochs")))
        assert schedule == ("step", 0.1, 100)
    linear = ("decay", "end")
    for set_name, bias_correction in (("bop2ndOrder_CIFAR", False), ("bop2ndOrder_unbiased_CIFAR", True)):
        cifar = hparams.resolve("binarynet_batch", set_name)
        assert (cifar["epochs"], cifar["batch_size"], cifar["bias_correction"]) == (500, 50, bias_correction)
        assert [(cifar[name], *(cifar[f"{name}_{part}"] for part in linear))
                for name in ("threshold", "gamma", "sigma", "learning_rate")] == [
            (1e-5, "linear", 1e-8), (1e-2, "linear", 1e-5), (1e-7, "linear", 1e-2), (1e-2, "linear", 1e-3)]
    for model, epochs in (("xnornet_batch", 100), ("birealnet_batch", 150)):
        imagenet = hparams.resolve(model, "bop2ndOrder_ImageNet")
        assert (imagenet["epochs"], imagenet["batch_size"], imagenet["bias_correction"]) == (epochs, 1024, False)
        assert [(imagenet[name], *(imagenet[f"{name}_{part}"] for part in linear))
                for name in ("threshold", "gamma", "sigma", "learning_rate")] == [
            (1e-8, "linear", 1e-5), (1e-4, "linear", 1e-9), (1e-5, "linear", 1e-2), (2.5e-3, "linear", 5e-6)]
        assert hparams.default_set(model) == "bop2ndOrder_ImageNet"
    assert hparams.resolve("xnornet_batch", "bop2ndOrder_ImageNet")["kernel_regularization"] == 5e-7
    assert hparams.default_set("binarynet_batch") == "bop2ndOrder"


def test_that_papers_factor_decays_become_step_schedules_with_its_period():
    # Its section 5.1.4 command line, on bnno's bop set and on its own set.
    overrides = "epochs_decay=100,threshold=1e-6,threshold_decay=0.1,gamma=1e-7,gamma_decay=0.1,sigma=1e-3,sigma_decay=0.1"
    for model, set_name in (("binarynet", "bop"), ("binarynet_batch", "bop2ndOrder_testExp")):
        h = hparams.resolve(model, set_name, overrides)
        for name in ("threshold", "gamma", "sigma"):
            assert (h[f"{name}_decay"], h[f"{name}_decay_factor"], h[f"{name}_decay_epochs"]) == ("step", 0.1, 100)
    # epochs_decay is the period of every factor; bnno's own words still override a factor.
    h = hparams.resolve("binarynet_batch", "bop2ndOrder_testExp", "epochs_decay=50,gamma_decay=linear,gamma_end=1e-9")
    assert (h["threshold_decay_epochs"], h["sigma_decay_epochs"], h["learning_rate_decay_epochs"]) == (50, 50, 50)
    assert (h["gamma_decay"], h["gamma_end"]) == ("linear", 1e-9) and "gamma_decay_factor" not in h
    # A word is left alone, with or without epochs_decay.
    assert hparams.resolve("binarynet", "bop_sec52", "epochs_decay=7")["gamma_decay_epochs"] == 100


@pytest.mark.parametrize(
    "model, set_name, overrides, message",
    [
        ("binarynet", "bop", "gamma_decay=0.1",
         "gamma_decay=0.1 in binarynet set 'bop' is a factor, which needs epochs_decay=N (times 0.1 every N "
         "epochs, as in 'A Bop and Beyond'); or write gamma_decay=step,gamma_decay_factor=0.1,gamma_decay_epochs=N."),
        ("binarynet_batch", "bop2ndOrder_testExp", "epochs_decay=0",
         "Hyperparameter epochs_decay of binarynet_batch set 'bop2ndOrder_testExp' must be a whole number of at "
         "least 1 and at most 2147483647; got 0."),
        ("binarynet_batch", "bop2ndOrder_testExp", "epochs_decay=1.5",
         "Hyperparameter epochs_decay=1.5 must be a whole number (e.g. 100)."),
        ("binarynet_batch", "bop2ndOrder_testExp", "sigma_decay=stepp",
         "Unknown sigma_decay 'stepp' in binarynet_batch set 'bop2ndOrder_testExp'; valid choices are: linear, "
         "none, piecewise, step. Did you mean 'step'?"),
        ("binarynet_batch", "bop2ndOrder", "sigma=-1",
         "Hyperparameter sigma of binarynet_batch set 'bop2ndOrder' must be a number greater than 0 and at most "
         "1; got -1.0."),
        ("binarynet_batch", "bop2ndOrder", "sigma=0",
         "Hyperparameter sigma of binarynet_batch set 'bop2ndOrder' must be a number greater than 0 and at most "
         "1; got 0.0."),
        ("binarynet_batch", "bop2ndOrder", "bias_correction=maybe", "Hyperparameter bias_correction=maybe must be true or false."),
        ("binarynet_batch", "bop2ndOrder", "normalization=group",
         "Unknown normalization 'group' in binarynet_batch set 'bop2ndOrder'; valid choices are: batch, layer."),
        ("binarynet_batch", "bop2ndOrder", "sigma_decay=linear",
         "sigma_decay=linear in binarynet_batch set 'bop2ndOrder' also needs sigma_end (e.g. --hparams sigma_end=...)."),
        ("binarynet_batch", "bop2ndOrder", "threshold_decay=linear,threshold_end=-1",
         "Hyperparameter threshold_end of binarynet_batch set 'bop2ndOrder' must be a number at least 0; got -1.0."),
        ("binarynet_batch", "bop2ndOrder_unbiased", "gamma_decay=piecewise,gamma_boundaries=[10],gamma_factors=[1, 0]",
         "gamma_factors of binarynet_batch set 'bop2ndOrder_unbiased' must all be greater than 0: bias_correction "
         "divides by gamma."),
        ("binarynet", "bop", "optimizer=bop2nd",
         "Hyperparameter sigma of binarynet set 'bop' must be a number."),
    ],
)
def test_bad_bop2ndorder_values_are_one_sentence_usage_errors(model, set_name, overrides, message):
    with pytest.raises(UsageError) as error:
        hparams.resolve(model, set_name, overrides)
    assert str(error.value) == message


# --- default sets ------------------------------------------------------------------------


MODELS = ("binarynet", "binary_alexnet", "xnornet", "birealnet")


@pytest.mark.parametrize("model", MODELS)
def test_every_model_defaults_to_the_papers_bop_recipe(model):
    assert hparams.default_set(model) == "bop"
    assert hparams.resolve(model) == hparams.resolve(model, "bop")
    assert hparams.DEFAULT_SET_KEY not in hparams.set_names(model)


def test_the_sets_are_the_repositorys_hparams_folder():
    root = pathlib.Path(__file__).resolve().parents[1]
    assert hparams.model_names() == sorted(path.stem for path in (root / "hparams").glob("*.yaml"))
    if not pathlib.Path(bnno.__file__).resolve().is_relative_to(root):
        pytest.skip("bnno is installed, not run from this repository")
    # An editable install reads the folder itself: edits need no reinstall.
    assert pathlib.Path(str(resources.files(hparams.SETS_PACKAGE))).resolve() == root / "hparams"


# --- values a run would crash on -------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        ("gamma_decay=piecewise,gamma_boundaries=[a,b],gamma_factors=[1,2,3]",
         "Hyperparameter gamma_boundaries of binarynet set 'bop' must be a list of whole numbers of "
         "epochs (e.g. [30, 60]); got ['a', 'b']."),
        ("gamma_decay=piecewise,gamma_boundaries=[1.5],gamma_factors=[1,2]",
         "gamma_boundaries of binarynet set 'bop' must be a list of whole numbers of epochs"),
        ("gamma_decay=piecewise,gamma_boundaries=[-1],gamma_factors=[1,2]",
         "gamma_boundaries of binarynet set 'bop' must be a list of whole numbers of epochs"),
        ("gamma_decay=piecewise,gamma_boundaries=[10],gamma_factors=[1,x]",
         "gamma_factors of binarynet set 'bop' must be a list of numbers of at least 0 (e.g. [1, 0.1, 0.01])"),
        ("learning_rate_decay=piecewise,learning_rate_boundaries=[10],learning_rate_factors=[1,[2]]",
         "learning_rate_factors of binarynet set 'bop' must be a list of numbers"),
        ("learning_rate_decay=piecewise,learning_rate_boundaries=[10],learning_rate_factors=[1,.nan]",
         "learning_rate_factors of binarynet set 'bop' must be a list of numbers"),
        ("gamma=0", "Hyperparameter gamma of binarynet set 'bop' must be a number greater than 0 and at most 1; got 0.0."),
        ("gamma=2", "gamma of binarynet set 'bop' must be a number greater than 0 and at most 1; got 2.0."),
        ("gamma=-1e-3", "gamma of binarynet set 'bop' must be a number greater than 0 and at most 1"),
        ("gamma=nan", "Hyperparameter gamma of binarynet set 'bop' must be a finite number; got nan."),
        ("learning_rate=-0.01", "learning_rate of binarynet set 'bop' must be a number at least 0; got -0.01."),
        ("learning_rate=inf", "learning_rate of binarynet set 'bop' must be a finite number; got inf."),
        ("learning_rate=1e999", "learning_rate of binarynet set 'bop' must be a finite number; got inf."),
        ("threshold=-1e-8", "threshold of binarynet set 'bop' must be a number at least 0"),
        ("threshold=.nan", "threshold of binarynet set 'bop' must be a finite number"),
        ("gamma_decay=linear,gamma_end=2", "gamma_end of binarynet set 'bop' must be a number at least 0 and at most 1"),
        ("gamma_decay=step,gamma_decay_factor=0,gamma_decay_epochs=10",
         "gamma_decay_factor of binarynet set 'bop' must be a number greater than 0 and at most 1"),
        ("gamma_decay=step,gamma_decay_factor=0.1,gamma_decay_epochs=0",
         "gamma_decay_epochs of binarynet set 'bop' must be a whole number of at least 1"),
        ("epochs=99999999999999999999", "epochs of binarynet set 'bop' must be a whole number of at least 1 and at most 2147483647"),
        ("epochs=-3", "epochs of binarynet set 'bop' must be a whole number of at least 1"),
        ("epochs=true", "Hyperparameter epochs=true must be a whole number"),
        ("kernel_regularization=1", "Unknown hyperparameter 'kernel_regularization'"),
        ("epochs=[1", "Hyperparameter overrides 'epochs=[1' have unbalanced brackets [ ]."),
        ("epochs=1],batch_size=2", "have unbalanced brackets [ ]."),
        ("=1", "Hyperparameter override '=1' is not of the form key=value."),
        ("epochs=", "Hyperparameter override 'epochs=' has no value."),
        ("epochs=1,epochs=2", "Hyperparameter epochs is overridden twice."),
        ("gamma=!!float x", "Hyperparameter gamma=!!float x must be a number"),
        ("gamma=99" + "9" * 400, "gamma of binarynet set 'bop' must be a finite number"),
    ],
)
def test_values_that_would_crash_training_are_usage_errors(overrides, message):
    with pytest.raises(UsageError) as error:
        hparams.resolve("binarynet", "bop", overrides)
    assert message in str(error.value)


def test_sane_edge_values_are_accepted():
    h = hparams.resolve("binarynet", "bop", "threshold=0,gamma=1,learning_rate=0")
    assert (h["threshold"], h["gamma"], h["learning_rate"]) == (0.0, 1.0, 0.0)
    assert hparams.resolve("xnornet", "bop", "kernel_regularization=0")["kernel_regularization"] == 0.0


# Pieces of --hparams strings a user (or a shell) could produce.
FUZZ_KEYS = sorted(hparams.COMMON_KEYS) + [
    "filters", "dense_units", "kernel_regularization", "treshold", "extends", "default_set",
    "", " ", "épochs", "a b", "[", "]", "{", "-", "\u2603", "\x00",
]
FUZZ_VALUES = [
    "1", "0", "-1", "2", "100", "1e-3", "1.0e-4", "1.5", "-0.0", "1e999", "-1e999", "9" * 400,
    "nan", ".nan", "NaN", "inf", ".inf", "-.inf", "true", "false", "null", "~", "none",
    "[", "]", "[]", "[1, 2", "[10, 20]", "[1, 0.1, 0.01]", "[[1], [2]]", "[1, [2, 3]]", "[a, b]",
    "[1e999]", "[nan]", "[-5, 3]", "[" * 60 + "]" * 60, "[" * 3000,
    "{", "}", "{a: 1}", "!!python/object:os.system", "!!python/name:os.system", "!!int x",
    "!!float y", "!!binary zz", "!!set {a}", "!!timestamp nope", "&anchor 1", "*alias", "&a [*a]",
    "'quoted, comma'", '"a,b"', "'", '"', "ü", "日本語", "2020-01-01", "0x1F", "0o17", "1_000",
    "linear", "step", "piecewise", "constant", "bop", "adam", "sgd", "ste_sign", "weight_clip",
    ":", "- 1", "? x", "|", ">", "%YAML 1.2", "---", "...", "#", "=", "==", ",", "a=b", "\t", " ",
]
FUZZ_ALPHABET = "[]{}(),=:!&*'\"#|>-?%@` \t\nabe1.05é\u2603"


def random_item(rng):
    key, value = rng.choice(FUZZ_KEYS), rng.choice(FUZZ_VALUES)
    forms = [f"{key}={value}", f"{key}={value}", f"{key}={value}", key, f"={value}", f"{key}=",
             "", f"{key}={value}={value}", value,
             "".join(rng.choice(FUZZ_ALPHABET) for _ in range(rng.randint(1, 12)))]
    return rng.choice(forms)


def test_any_overrides_string_gives_hyperparameters_or_a_usage_error():
    rng = random.Random(20190605)
    outcomes = {"valid": 0, "usage error": 0}
    sets = [(model, set_name) for model in MODELS for set_name in hparams.set_names(model)]
    for case in range(4000):
        model, set_name = sets[case % len(sets)]
        text = rng.choice([",", ", ", ",,"]).join(random_item(rng) for _ in range(rng.randint(1, 4)))
        try:
            result = hparams.resolve(model, set_name, text)
        except UsageError as error:
            assert str(error).endswith((".", "?")), (text, str(error))
            outcomes["usage error"] += 1
        except Exception as error:  # noqa: BLE001
            pytest.fail(f"resolve({model!r}, {set_name!r}, {text!r}) raised {error!r}")
        else:
            assert isinstance(result, hparams.Config)  # typed, and a mapping of the values
            outcomes["valid"] += 1
    assert min(outcomes.values()) > 100, outcomes  # both paths were exercised


# --- a user's own file of sets (--hparams-file) ----------------------------------------


def write(tmp_path, text, name="mine.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def test_a_users_file_extends_its_own_and_built_in_sets(tmp_path):
    file = write(tmp_path, """\
        default_set: small
        small:
          extends: binarynet:bop
          filters: 64
          gamma: 1e-4            # YAML 1.1 reads this as text: still a number here
        smaller:
          extends: small
          dense_units: 128
    """)
    assert hparams.set_names("binarynet", file) == ["small", "smaller"]
    assert hparams.default_set("binarynet", file) == "small"
    small = hparams.resolve("binarynet", None, "epochs=3", file=file)
    bop = hparams.resolve("binarynet", "bop")
    assert small == {**bop, "filters": 64, "gamma": 1e-4, "epochs": 3}
    smaller = hparams.resolve("binarynet", "smaller", file=file)
    assert smaller == {**bop, "filters": 64, "gamma": 1e-4, "dense_units": 128}


def test_a_file_of_one_set_needs_no_default_set(tmp_path):
    file = write(tmp_path, "only:\n  extends: birealnet:adam\n  epochs: 2\n")
    assert hparams.default_set("birealnet", file) == "only"
    assert hparams.resolve("birealnet", file=file)["epochs"] == 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("a:\n  extends: binarynet:bop\nb:\n  extends: a\n",
         "Hyperparameter file {file} has several sets and no default_set; pass --hparams-set with one of: a, b."),
        ("a:\n  epochs: 1\n   batch_size: 2\n", "Hyperparameter file {file} is not valid YAML: "
         "mapping values are not allowed here (line 3)."),
        ("a: [1, 2\n", "Hyperparameter file {file} is not valid YAML: "),
        ("- a\n- b\n", "Hyperparameter file {file} must map set names to sets of hyperparameters"),
        ("", "Hyperparameter file {file} must map set names to sets of hyperparameters"),
        ("a: 1\n", "Hyperparameter file {file} must map set names to sets of key: value pairs; its entry 'a' is not one."),
        ("default_set: b\n", "Hyperparameter file {file} has no sets, only default_set."),
        ("default_set: bop\nbob:\n  extends: binarynet:bop\n",
         "Unknown default_set 'bop' in {file}; valid choices are: bob. Did you mean 'bob'?"),
        ("mine:\n  extends: bop\n", "Unknown set 'bop' in extends of set 'mine' of {file}; valid choices are: mine."),
        ("mine:\n  extends: binarynet:bopp\n",
         "Unknown binarynet set 'bopp' in extends of set 'mine' of {file}; valid choices are: adam_sec52, bop, "
         "bop2ndOrder, bop2ndOrder_testExp, bop2ndOrder_unbiased, bop2ndOrder_unbiased_testExp, bop_sec52, default. "
         "Did you mean 'bop'?"),
        ("mine:\n  extends: binarynett:bop\n",
         "Unknown model 'binarynett' in extends of set 'mine' of {file}; valid choices are: binary_alexnet, "
         "binarynet, binarynet_batch, birealnet, birealnet_batch, resnet18_tricks, xnornet, xnornet_batch. "
         "Did you mean 'binarynet'?"),
        ("mine:\n  extends: [bop]\n", "extends of set 'mine' of {file} must name a set, e.g. bop or binarynet:bop."),
        ("default_set: a\na:\n  extends: b\nb:\n  extends: c\nc:\n  extends: a\n",
         "Hyperparameter sets extend each other in a loop: a -> b -> c -> a."),
        ("a:\n  extends: binarynet:bop\n  gamma: 3\n", "Hyperparameter gamma of set 'a' of {file} must be a number "
         "greater than 0 and at most 1; got 3.0."),
        ("a:\n  extends: binarynet:bop\n  epochs: ten\n", "Hyperparameter epochs of set 'a' of {file} must be a whole "
         "number (e.g. 100); got 'ten'."),
        ("a:\n  extends: binarynet:bop\n  optimizer: [bop]\n", "Hyperparameter optimizer of set 'a' of {file} must "
         "be text (e.g. ste_sign); got ['bop']."),
    ],
)
def test_mistakes_in_a_users_file_are_one_sentence(tmp_path, text, message):
    file = write(tmp_path, text)
    with pytest.raises(UsageError) as error:
        hparams.resolve("binarynet", None, file=file)
    assert message.format(file=file) in str(error.value)


def test_a_missing_file_and_an_unknown_set_of_a_file(tmp_path):
    with pytest.raises(UsageError, match=r"^Hyperparameter file .*nowhere.yaml does not exist\.$"):
        hparams.resolve("binarynet", None, file=str(tmp_path / "nowhere.yaml"))
    file = write(tmp_path, "small:\n  extends: binarynet:bop\n")
    with pytest.raises(UsageError) as error:
        hparams.resolve("binarynet", "smal", file=file)
    assert str(error.value) == (
        f"Unknown hyperparameter set 'smal' in {file}; valid choices are: small. Did you mean 'small'?"
    )


def test_any_file_gives_sets_or_a_usage_error(tmp_path):
    rng = random.Random(1906)
    path = tmp_path / "fuzz.yaml"
    lines = ["default_set: a", "a:", "b:", "  extends: a", "  extends: b", "  extends: binarynet:bop",
             "  extends: xnornet:nope", "  epochs: 2", "  gamma: 1e-3", "  gamma: 5", "  filters: [",
             "  - 1", "x", "  optimizer: {a: 1}", "1: {}", "  1: 2", "! !", "\t", "a: b: c", "&x a:", "*x"]
    for _ in range(400):
        path.write_text("\n".join(rng.choice(lines) for _ in range(rng.randint(1, 8))), encoding="utf-8")
        try:
            hparams.resolve("binarynet", None, "epochs=1", file=str(path))
        except UsageError:
            pass
        except Exception as error:  # noqa: BLE001
            pytest.fail(f"{path.read_text()!r} raised {error!r}")


def test_the_readmes_example_file_works(tmp_path):
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    example = readme.split("```yaml\n# my_sets.yaml\n", 1)[1].split("```", 1)[0]
    file = write(tmp_path, example, name="my_sets.yaml")
    assert hparams.default_set("binarynet", file) == "slow_gamma"
    wide = hparams.resolve("binarynet", "slow_gamma_wide", file=file)
    assert (wide["gamma"], wide["epochs"], wide["filters"], wide["threshold"]) == (1e-4, 200, 256, 1e-6)


def test_reading_sets_never_imports_tensorflow():
    code = (
        "import sys\n"
        "from bnno import hparams\n"
        "hparams.resolve('binarynet', None, 'epochs=1')\n"
        "assert not [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
