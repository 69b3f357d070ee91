"""bnno.config's typed pieces: schedules and optimizers built from hyperparameter sets,
with steps from the data."""

import keras
import pytest

from bnno import config as hparams
from bnno.config import Config, Schedule
from bnno.nn.optimizers import Bop, Bop2ndOrder, CaseOptimizer


def value(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_section_52_gamma_drops_tenfold_every_100_epochs():
    h = hparams.resolve("binarynet", "bop_sec52")
    gamma = Schedule.read(h, "gamma").build(h["epochs"], 1000)  # 50,000 images / 50
    assert value(gamma, 0) == pytest.approx(1e-4)
    assert value(gamma, 99_999) == pytest.approx(1e-4)
    assert value(gamma, 100_000) == pytest.approx(1e-5)
    assert value(gamma, 250_000) == pytest.approx(1e-6)


def test_imagenet_schedules_run_linearly_over_the_whole_run():
    h = hparams.resolve("birealnet", "bop")
    steps_per_epoch = 1_281_167 // 1024
    total = 300 * steps_per_epoch
    gamma = Schedule.read(h, "gamma").build(h["epochs"], steps_per_epoch)
    lr = Schedule.read(h, "learning_rate").build(h["epochs"], steps_per_epoch)
    assert value(gamma, 0) == pytest.approx(1e-4)
    assert value(gamma, total // 2) == pytest.approx((1e-4 + 1e-6) / 2, rel=1e-4)
    assert value(gamma, total) == pytest.approx(1e-6)
    assert value(lr, total) == pytest.approx(5e-6)
    # Fewer steps (a smaller data set) end the decay at the end of that run.
    short = Schedule.read(h, "gamma").build(h["epochs"], 10)
    assert value(short, 3000) == pytest.approx(1e-6)


def test_piecewise_schedule_of_xnornets_adam_baseline():
    h = hparams.resolve("xnornet", "adam")
    lr = Schedule.read(h, "learning_rate").build(h["epochs"], 10)
    assert value(lr, 189) == pytest.approx(1e-3)
    assert value(lr, 191) == pytest.approx(5e-4)
    assert value(lr, 500) == pytest.approx(1e-3 * 0.05)  # epoch 50: from 44 on
    assert value(lr, 700) == pytest.approx(1e-3 * 0.005)  # epoch 70: from 66 on
    assert value(lr, 10_000) == pytest.approx(1e-7)


def test_constant_when_there_is_no_decay():
    assert Schedule.read({"gamma": 1e-3, "gamma_decay": "none"}, "gamma").build(1, 10) == 1e-3


def test_bop_sets_train_binary_kernels_with_bop_and_the_rest_with_adam():
    optimizer = hparams.resolve("binarynet", "bop").build_optimizer(500)
    assert isinstance(optimizer, CaseOptimizer)
    bop, adam = optimizer.optimizers
    assert isinstance(bop, Bop) and isinstance(adam, keras.optimizers.Adam)
    assert bop.threshold == 1e-6 and float(bop.gamma) == pytest.approx(1e-3)
    assert float(adam.learning_rate) == pytest.approx(1e-2)
    assert optimizer.predicates[0] is Bop.is_binary_variable


def test_adam_sets_use_adam_alone():
    optimizer = hparams.resolve("binarynet", "default").build_optimizer(500)
    assert type(optimizer) is keras.optimizers.Adam
    assert float(optimizer.learning_rate) == pytest.approx(5e-3)


# --- Bop2ndOrder ("A Bop and Beyond", Suarez-Ramirez et al., 2021) --------------------------


@pytest.mark.parametrize("set_name, bias_correction", [("bop2ndOrder", False), ("bop2ndOrder_unbiased", True)])
def test_bop2nd_sets_train_binary_kernels_with_bop2ndorder_and_the_rest_with_adam(set_name, bias_correction):
    optimizer = hparams.resolve("binarynet_batch", set_name).build_optimizer(500)
    assert isinstance(optimizer, CaseOptimizer)
    bop2nd, adam = optimizer.optimizers
    assert type(bop2nd) is Bop2ndOrder and type(adam) is keras.optimizers.Adam
    assert (bop2nd.threshold, bop2nd.sigma, bop2nd.bias_correction, bop2nd.epsilon) == (1e-5, 1e-3, bias_correction, 1e-10)
    assert float(bop2nd.gamma) == pytest.approx(1e-7)
    assert float(adam.learning_rate) == pytest.approx(1e-2)
    assert optimizer.predicates[0] is Bop.is_binary_variable


def test_section_514_decays_threshold_gamma_sigma_and_learning_rate_tenfold_every_100_epochs():
    h = hparams.resolve("binarynet_batch", "bop2ndOrder_testExp")
    for name, start in (("threshold", 1e-6), ("gamma", 1e-7), ("sigma", 1e-3), ("learning_rate", 1e-2)):
        decayed = Schedule.read(h, name).build(h["epochs"], 1000)  # 50,000 images / 50
        assert [value(decayed, step) for step in (0, 99_999, 100_000, 250_000)] == pytest.approx(
            [start, start, start / 10, start / 100], rel=1e-5), name
    bop2nd, _ = Config.from_values(h).build_optimizer(1000).optimizers
    assert value(bop2nd.threshold, 100_000) == pytest.approx(1e-7)
    assert value(bop2nd.sigma, 100_000) == pytest.approx(1e-4)
    assert h.schedules_depending_on_epochs() == []  # such a run can be extended


def test_section_52_schedules_run_linearly_over_the_run_and_sigma_rises():
    h = hparams.resolve("binarynet_batch", "bop2ndOrder_CIFAR")
    total = 500 * 1000
    expected = {"threshold": (1e-5, 1e-8), "gamma": (1e-2, 1e-5), "sigma": (1e-7, 1e-2), "learning_rate": (1e-2, 1e-3)}
    for name, (start, end) in expected.items():
        linear = Schedule.read(h, name).build(h["epochs"], 1000)
        # PolynomialDecay computes (start - end) * (1 - t / T) + end in float32: rising
        # from 1e-7 to 1e-2, sigma starts at 9.965e-8.
        assert [value(linear, step) for step in (0, total // 2, total)] == pytest.approx(
            [start, (start + end) / 2, end], rel=1e-4, abs=1e-6 * max(start, end)), name
    assert h.schedules_depending_on_epochs() == ["learning_rate", "gamma", "threshold", "sigma"]


def test_bops_threshold_follows_a_schedule_too():
    h = hparams.resolve("binarynet", "bop", "threshold_decay=piecewise,threshold_boundaries=[2],threshold_factors=[1, 0]")
    bop, _ = Config.from_values(h).build_optimizer(10).optimizers
    assert type(bop) is Bop
    assert [value(bop.threshold, step) for step in (20, 21)] == [pytest.approx(1e-6), 0.0]


# --- the typed configuration ---------------------------------------------------------------


def test_threshold_travels_from_the_overrides_to_bop_in_typed_objects():
    from bnno.config import BopConfig

    resolved = hparams.resolve("binarynet", "bop", "threshold=1e-7")
    assert isinstance(resolved, Config) and resolved.overrides == {"threshold": "1e-7"}
    assert isinstance(resolved.binary, BopConfig)
    assert resolved.binary.threshold == Schedule(name="threshold", start=1e-7)
    bop, adam = resolved.build_optimizer(steps_per_epoch=10).optimizers
    assert isinstance(bop, Bop) and bop.threshold == 1e-7 and float(adam.learning_rate) == pytest.approx(1e-2)
    point = resolved.replace({"threshold": 0.0})  # a sweep's point: values replaced, checked again
    assert point.binary.threshold.start == 0.0 and resolved.binary.threshold.start == 1e-7
    with pytest.raises(Exception, match="Hyperparameter threshold of binarynet set 'bop' must be a number at least 0"):
        resolved.replace({"threshold": -1.0})


def test_every_optimizer_hyperparameter_is_a_key_of_the_type_and_bounds_its_field_declares():
    """An optimizer's hyperparameter is declared once, as a field of its configuration;
    the keys a set may hold, their types and bounds come from there."""
    import dataclasses

    from bnno.config import keys, optimizers
    from bnno.config.schedules import SCHEDULE_KEYS

    for config in optimizers.OPTIMIZERS.values():
        for field in dataclasses.fields(config):
            if field.metadata.get("schedule"):
                assert all(key.format(field.name) in keys.COMMON_KEYS for key in SCHEDULE_KEYS)
                assert keys.BOUNDS[field.name] == field.metadata["bounds"]
                assert keys.BOUNDS[f"{field.name}_end"] == field.metadata["end_bounds"]
            else:
                assert keys.COMMON_KEYS[field.name] is field.type
                assert keys.BOUNDS.get(field.name) == field.metadata["bounds"]
    assert keys.SCHEDULES == ("learning_rate", "gamma", "threshold", "sigma")
    assert keys.OPTIMIZERS == ("adam", "bop", "bop2nd")
