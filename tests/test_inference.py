"""Exported models at work: the flatbuffer's metadata, the engine's process, and the
one-sentence refusals of `bnno evaluate MODEL.tflite` and `bnno benchmark --inference`.
The trained end-to-end checks (accuracy and latency of a real export) are in
tests/test_export.py."""

import numpy as np
import pytest
from click.testing import CliRunner

from bnno import inference, tflite_file
from bnno.cli import cli


@pytest.fixture(scope="module")
def plain_flatbuffer(tmp_path_factory):
    """A float TFLite model (a convolution and a softmax on 16x16x3 images) as TFLite's
    own converter writes it: no bnno metadata."""
    import keras
    import tensorflow as tf

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, kernel_initializer=keras.initializers.RandomNormal(seed=3))(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    folder = tmp_path_factory.mktemp("plain")
    model.export(str(folder / "saved_model"), verbose=False)
    flatbuffer = tf.lite.TFLiteConverter.from_saved_model(str(folder / "saved_model")).convert()
    (folder / "plain.tflite").write_bytes(flatbuffer)
    return folder / "plain.tflite"


def _tflite_outputs(flatbuffer: bytes, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    inputs, outputs = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for image in images:
        interpreter.set_tensor(inputs["index"], image[None])
        interpreter.invoke()
        results.append(interpreter.get_tensor(outputs["index"]))
    return np.concatenate(results)


def test_metadata_round_trips_and_leaves_the_model_as_it_was(plain_flatbuffer):
    original = plain_flatbuffer.read_bytes()
    assert tflite_file.read_metadata(original) is None
    annotated = tflite_file.with_metadata(original, {"run": "/runs/a", "dataset": "cifar10", "image_size": None})
    assert tflite_file.read_metadata(annotated) == {"run": "/runs/a", "dataset": "cifar10", "image_size": None}
    again = tflite_file.with_metadata(annotated, {"run": "/runs/b"})  # replaced, not added twice
    assert tflite_file.read_metadata(again) == {"run": "/runs/b"}
    assert tflite_file.op_counts(again) == tflite_file.op_counts(original)
    assert tflite_file.op_counts(original)["CONV_2D"] == 1
    images = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
    np.testing.assert_array_equal(_tflite_outputs(again, images), _tflite_outputs(original, images))


def test_evaluate_refuses_what_is_not_a_tflite_and_a_foreign_tflite_without_a_dataset(tmp_path, plain_flatbuffer):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    result = CliRunner().invoke(cli, ["evaluate", str(notes)])
    assert result.exit_code == 2
    assert f"{notes} is not a TFLite flatbuffer (written by bnno export --format lce)." in result.output
    result = CliRunner().invoke(cli, ["evaluate", str(plain_flatbuffer)])
    assert result.exit_code == 2
    assert (f"{plain_flatbuffer} was not written by bnno export, so it does not say which data set it takes; "
            "pass --dataset.") in result.output
    assert "Traceback" not in result.output


def test_evaluate_takes_one_run_or_file_and_data_options_only_for_a_file(tmp_path, plain_flatbuffer):
    run = tmp_path / "run"
    run.mkdir()
    both = CliRunner().invoke(cli, ["evaluate", str(plain_flatbuffer), "--output-dir", str(run)])
    neither = CliRunner().invoke(cli, ["evaluate"])
    for result in (both, neither):
        assert result.exit_code == 2
        assert "Give one run directory or .tflite file to evaluate (as the argument or --output-dir)." in result.output
    result = CliRunner().invoke(cli, ["evaluate", str(run), "--dataset", "cifar10"])
    assert result.exit_code == 2
    assert ("--dataset, --preprocess-fn and --image-size are for a .tflite; a run is evaluated on the data it "
            "was trained on.") in result.output


def test_benchmark_inference_refuses_training_options_bad_threads_and_what_is_no_run(tmp_path, plain_flatbuffer):
    pytest.importorskip("larq_compute_engine")
    result = CliRunner().invoke(cli, ["benchmark", "--inference", str(plain_flatbuffer), "--hparams-set", "bop",
                                      "--batch-size", "8"])
    assert result.exit_code == 2
    assert "--hparams-set, --batch-size time training, not --inference; leave them out." in result.output
    for threads in ("0", "one", "1,,2"):
        result = CliRunner().invoke(cli, ["benchmark", "--inference", str(plain_flatbuffer), "--threads", threads])
        assert result.exit_code == 2, threads
        assert "--threads takes whole numbers of at least 1 separated by commas, e.g. 1,2; not " in result.output
    result = CliRunner().invoke(cli, ["benchmark", "--inference", str(tmp_path / "gone.tflite")])
    assert result.exit_code == 2
    assert f"--inference times a run directory or a .tflite file; {tmp_path / 'gone.tflite'} does not exist." \
        in result.output
    result = CliRunner().invoke(cli, ["benchmark", "--inference", str(tmp_path)])
    assert result.exit_code == 2
    assert f"{tmp_path} is neither a run directory (no hparams.yaml) nor a .tflite file." in result.output


def test_the_latency_table_aligns_its_columns():
    result = {
        "threads": [1, 2], "repeats": 20, "warmup": 3, "cpu": "Some CPU", "cpus": 2, "run": "/runs/a",
        "kernels": "Kernels: as described.",
        "models": [
            {"model": "engine, 1-bit", "milliseconds": {"1": 12.345, "2": 7.0}, "note": "LceBconv2d x8"},
            {"model": "float TFLite", "milliseconds": {"1": 123.4, "2": 61.25}, "note": ""},
        ],
    }
    assert inference.latency_lines(result) == [
        "Latency per image, batch 1, median of 20 after 3 warm-up runs, on Some CPU (2 CPUs):",
        "model           1 thread  2 threads",
        "engine, 1-bit   12.35 ms    7.00 ms  LceBconv2d x8",
        "float TFLite   123.40 ms   61.25 ms",
        "Kernels: as described.",
    ]


@pytest.mark.slow
def test_the_engines_process_predicts_times_and_says_what_failed(plain_flatbuffer, engine_cache, monkeypatch):
    from bnno import engine_runtime
    from bnno.errors import RunError

    monkeypatch.setenv("BNNO_CACHE", str(engine_cache))
    flatbuffer = plain_flatbuffer.read_bytes()
    images = np.random.default_rng(1).uniform(-1, 1, (5, 16, 16, 3)).astype(np.float32)
    with engine_runtime.Engine(echo=lambda line: None) as engine:
        engine.load(flatbuffer, threads=1)
        assert engine.input_shape == [1, 16, 16, 3] and engine.output_shape == [1, 3]
        np.testing.assert_allclose(engine.predict(images), _tflite_outputs(flatbuffer, images), rtol=1e-5, atol=1e-6)
        seconds = engine.latencies(images[0], warmup=1, repeats=4)
        assert len(seconds) == 4 and all(0 < s < 10 for s in seconds)
        with pytest.raises(RunError) as wrong_shape:
            engine.predict(images[:, :8])
        message = str(wrong_shape.value)  # the tensor's name is Keras's
        assert message.startswith("larq-compute-engine's interpreter failed: Expected 16 for dimension 1 but "
                                  "found 8 for tensor serving_default_") and message.endswith(":0.")
        assert engine.predict(images[:2]).shape == (2, 3)  # the process is still in step after an error
        with pytest.raises(RunError) as garbage:
            engine.load(b"not a flatbuffer at all")
        assert str(garbage.value) == "larq-compute-engine's interpreter failed: Invalid model."


def test_without_the_engine_each_command_says_what_needs_it_and_what_to_install(monkeypatch, plain_flatbuffer):
    import sys

    monkeypatch.setitem(sys.modules, "larq_compute_engine", None)  # import fails
    for arguments, needed_by in ((["benchmark", "--inference", str(plain_flatbuffer)], "--inference"),
                                 (["evaluate", str(plain_flatbuffer)], "Evaluating a .tflite")):
        result = CliRunner().invoke(cli, arguments)
        assert result.exit_code == 2, result.output
        assert (f'{needed_by} needs larq-compute-engine: pip install "bnno[deploy]" (or '
                "larq-compute-engine==0.16.0).") in result.output
        assert "Traceback" not in result.output
