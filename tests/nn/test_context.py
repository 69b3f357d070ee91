"""Scoped settings (``bnno.nn.context.ScopedSetting``): set for a block, restored after
it, and seen by the threads in which tf.distribute traces each replica's step."""

import threading

import keras
import pytest

from bnno.nn import binary_conv, context, fused


def test_a_scope_sets_the_value_for_its_block_and_restores_the_previous_one():
    setting = context.ScopedSetting("example", "outer")
    with setting.scope("inner") as value:
        assert value == "inner" and setting.get() == "inner"
        with setting.scope("innermost"):
            assert setting.get() == "innermost"
        assert setting.get() == "inner"
    assert setting.get() == "outer"
    with pytest.raises(RuntimeError):
        with setting.scope("failing"):
            raise RuntimeError("the block failed")
    assert setting.get() == "outer"


def test_quantized_scope_binary_conv_and_fused_keep_their_public_behaviour():
    assert not context.should_quantize()
    with context.quantized_scope() as quantize:
        assert quantize and context.should_quantize()
        with context.quantized_scope(False):
            assert not context.should_quantize()
        assert context.should_quantize()
    assert not context.should_quantize()
    assert binary_conv.mode() == "auto"
    with binary_conv.use("float32") as mode:
        assert mode == "float32" and binary_conv.mode() == "float32"
    assert binary_conv.mode() == "auto"
    with pytest.raises(ValueError, match="Unknown binary convolution mode 'bf16'"):
        with binary_conv.use("bf16"):
            pass
    assert not fused.active()


def test_a_scope_reaches_another_thread():
    setting, seen = context.ScopedSetting("example", 0), []
    with setting.scope(1):
        thread = threading.Thread(target=lambda: seen.append(setting.get()))
        thread.start()
        thread.join()
    assert seen == [1]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute is TensorFlow's")
def test_scopes_reach_the_threads_in_which_mirrored_strategy_traces_each_replica():
    """bnno's Trainer enters binary_conv.use and fused.use around its step; the step's
    replica function runs (and is traced) in threads that MirroredStrategy starts."""
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    caller, seen = threading.get_ident(), []

    def replica_step():
        seen.append((threading.get_ident() != caller, binary_conv.mode(), fused.active(),
                     context.should_quantize()))
        return tf.constant(0.0)

    @tf.function
    def step():
        return strategy.run(replica_step)

    with binary_conv.use("bfloat16"), fused.use(), context.quantized_scope():
        step()
    assert seen == [(True, "bfloat16", True, True)]  # another thread, and every scope in it
