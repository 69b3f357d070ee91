"""Schedules and optimizers built from hyperparameter sets, with steps from the data."""

import keras
import pytest

from bnno import hparams, recipe
from bnno.nn.optimizers import Bop, CaseOptimizer


def value(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_section_52_gamma_drops_tenfold_every_100_epochs():
    h = hparams.resolve("binarynet", "bop_sec52")
    gamma = recipe.schedule(h, "gamma", steps_per_epoch=1000)  # 50,000 images / 50
    assert value(gamma, 0) == pytest.approx(1e-4)
    assert value(gamma, 99_999) == pytest.approx(1e-4)
    assert value(gamma, 100_000) == pytest.approx(1e-5)
    assert value(gamma, 250_000) == pytest.approx(1e-6)


def test_imagenet_schedules_run_linearly_over_the_whole_run():
    h = hparams.resolve("birealnet", "bop")
    steps_per_epoch = 1_281_167 // 1024
    total = 300 * steps_per_epoch
    gamma = recipe.schedule(h, "gamma", steps_per_epoch)
    lr = recipe.schedule(h, "learning_rate", steps_per_epoch)
    assert value(gamma, 0) == pytest.approx(1e-4)
    assert value(gamma, total // 2) == pytest.approx((1e-4 + 1e-6) / 2, rel=1e-4)
    assert value(gamma, total) == pytest.approx(1e-6)
    assert value(lr, total) == pytest.approx(5e-6)
    # Fewer steps (a smaller data set) end the decay at the end of that run.
    short = recipe.schedule(h, "gamma", steps_per_epoch=10)
    assert value(short, 3000) == pytest.approx(1e-6)


def test_piecewise_schedule_of_xnornets_adam_baseline():
    h = hparams.resolve("xnornet", "adam")
    lr = recipe.schedule(h, "learning_rate", steps_per_epoch=10)
    assert value(lr, 189) == pytest.approx(1e-3)
    assert value(lr, 191) == pytest.approx(5e-4)
    assert value(lr, 500) == pytest.approx(1e-3 * 0.05)  # epoch 50: from 44 on
    assert value(lr, 700) == pytest.approx(1e-3 * 0.005)  # epoch 70: from 66 on
    assert value(lr, 10_000) == pytest.approx(1e-7)


def test_constant_when_there_is_no_decay():
    assert recipe.schedule({"gamma": 1e-3, "gamma_decay": "none"}, "gamma", 10) == 1e-3


def test_bop_sets_train_binary_kernels_with_bop_and_the_rest_with_adam():
    optimizer = recipe.optimizer(hparams.resolve("binarynet", "bop"), steps_per_epoch=500)
    assert isinstance(optimizer, CaseOptimizer)
    bop, adam = optimizer.optimizers
    assert isinstance(bop, Bop) and isinstance(adam, keras.optimizers.Adam)
    assert bop.threshold == 1e-6 and float(bop.gamma) == pytest.approx(1e-3)
    assert float(adam.learning_rate) == pytest.approx(1e-2)
    assert optimizer.predicates[0] is Bop.is_binary_variable


def test_adam_sets_use_adam_alone():
    optimizer = recipe.optimizer(hparams.resolve("binarynet", "default"), steps_per_epoch=500)
    assert type(optimizer) is keras.optimizers.Adam
    assert float(optimizer.learning_rate) == pytest.approx(5e-3)
