"""tfds data sets through bnno.data.load/describe/prepare, offline: examples come from
tfds.testing.mock_data, and the network probe is replaced where a download could start."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

import bnno.data as data
from bnno.data import dataset as dataset_module
from bnno.data import network
from bnno.data.testing import BnnoTestDigits, mock_tfds
from bnno.errors import RunError, UsageError

NUM_EXAMPLES = 64


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """No test may reach the network; tests that want an answer set their own."""

    def probe(url, timeout=network.TIMEOUT_SECONDS):
        raise AssertionError(f"network probe fired for {url}")

    monkeypatch.setattr(network, "can_reach", probe)


@pytest.fixture
def cifar10():
    with mock_tfds(["cifar10"], num_examples=NUM_EXAMPLES, splits=("train", "test")):
        yield


def batches(dataset):
    return [(images.numpy(), labels.numpy()) for images, labels in dataset]


def raw_examples(split):
    """The mocked examples of cifar10's ``split``, in order, as tfds yields them."""
    builder = tfds.builder("cifar10")
    examples = list(builder.as_dataset(split=split).as_numpy_iterator())
    return np.stack([e["image"] for e in examples]), np.array([e["label"] for e in examples])


@pytest.mark.parametrize("preprocess", ["default", "resize_and_flip"])
def test_cifar10_training_batches(cifar10, preprocess):
    loaded = data.load("cifar10", preprocess=preprocess)
    assert loaded.input_shape == (32, 32, 3)
    assert loaded.num_classes == 10
    assert (loaded.train_examples, loaded.validation_examples) == (NUM_EXAMPLES, NUM_EXAMPLES)

    epoch = batches(loaded.train(batch_size=16, epoch=0, seed=1))
    assert len(epoch) == NUM_EXAMPLES // 16
    for images, labels in epoch:
        assert images.shape == (16, 32, 32, 3) and images.dtype == np.float32
        assert labels.shape == (16,) and labels.dtype == np.int32
        assert images.min() >= -1.0 and images.max() <= 1.0
        assert labels.min() >= 0 and labels.max() < 10
    # One pass over the data: every example exactly once.
    _, raw_labels = raw_examples("train")
    assert sorted(np.concatenate([labels for _, labels in epoch])) == sorted(raw_labels)


def test_cifar10_default_is_scaling_only(cifar10):
    """Evaluation (and ``default`` training) is the paper's image / 127.5 - 1."""
    loaded = data.load("cifar10")
    images = np.concatenate([b[0] for b in batches(loaded.validation(64))])
    labels = np.concatenate([b[1] for b in batches(loaded.validation(64))])
    raw_images, raw_labels = raw_examples("test")
    np.testing.assert_array_equal(images, raw_images.astype(np.float32) / np.float32(127.5) - 1)
    np.testing.assert_array_equal(labels, raw_labels)


def test_train_is_a_function_of_seed_and_epoch(cifar10):
    first = batches(data.load("cifar10", preprocess="resize_and_flip").train(16, epoch=3, seed=7))
    # A fresh load, as a resumed run would do.
    again = batches(data.load("cifar10", preprocess="resize_and_flip").train(16, epoch=3, seed=7))
    for (images, labels), (images_again, labels_again) in zip(first, again, strict=True):
        np.testing.assert_array_equal(images, images_again)
        np.testing.assert_array_equal(labels, labels_again)


def test_epochs_and_seeds_shuffle_differently(cifar10):
    loaded = data.load("cifar10", preprocess="resize_and_flip")

    def order(epoch, seed):
        return np.concatenate([images for images, _ in batches(loaded.train(16, epoch, seed))])

    epoch_0 = order(0, 1)
    assert not np.array_equal(epoch_0, order(1, 1))
    assert not np.array_equal(epoch_0, order(0, 2))


def test_augmentation_differs_between_epochs(cifar10):
    """The same image is cropped/flipped anew each epoch: a full-batch epoch sorted by
    content differs between epochs under resize_and_flip, not under default."""

    def sorted_epoch(preprocess, epoch):
        loaded = data.load("cifar10", preprocess=preprocess)
        images = np.concatenate([images for images, _ in batches(loaded.train(NUM_EXAMPLES, epoch, 1))])
        return np.sort(images.reshape(len(images), -1), axis=0)

    np.testing.assert_array_equal(sorted_epoch("default", 0), sorted_epoch("default", 1))
    assert not np.array_equal(sorted_epoch("resize_and_flip", 0), sorted_epoch("resize_and_flip", 1))


@pytest.mark.parametrize("cache", ["memory", "directory"])
def test_cache_changes_nothing(cifar10, tmp_path, cache):
    cache = str(tmp_path / "cache") if cache == "directory" else cache
    plain = batches(data.load("cifar10", preprocess="resize_and_flip").train(16, 2, 5))
    cached = data.load("cifar10", preprocess="resize_and_flip", cache=cache)
    for _ in range(2):  # the first pass fills the cache, the second reads it
        pairs = zip(plain, batches(cached.train(16, 2, 5)), strict=True)
        for (images, labels), (cached_images, cached_labels) in pairs:
            np.testing.assert_array_equal(images, cached_images)
            np.testing.assert_array_equal(labels, cached_labels)
    if cache != "memory":
        names = [path.name for path in (tmp_path / "cache").iterdir()]
        assert any(name.startswith("cifar10-3.0.2-train") for name in names), names


def test_validation_uses_test_split_and_keeps_partial_batch(cifar10):
    loaded = data.load("cifar10")
    assert loaded.validation_split == "test"
    sizes = [len(labels) for _, labels in batches(loaded.validation(batch_size=24))]
    assert sizes == [24, 24, 16]


def test_validation_split_preferred_when_present():
    with mock_tfds(["cifar10"], num_examples=8, splits=("train", "validation", "test")):
        assert data.load("cifar10").validation_split == "validation"


def test_missing_validation_and_test_splits_is_run_error():
    with mock_tfds(["cifar10"], num_examples=8, splits=("train", "extra")):
        with pytest.raises(RunError, match=r"neither a validation nor a test split \(it has: extra, train\)"):
            data.load("cifar10")


def test_plain_mock_data_loads_without_probing():
    """tfds.testing.mock_data without metadata: nothing is prepared, nothing is
    downloaded, splits are unknown; sizes come from the mocked datasets."""
    with tfds.testing.mock_data(num_examples=20):
        loaded = data.load("cifar10", data_dir="/nonexistent/tfds")
        assert (loaded.train_examples, loaded.validation_examples) == (20, 20)
        assert [len(labels) for _, labels in batches(loaded.train(8, 0, 0))] == [8, 8]


def test_generic_preprocessing_keeps_grayscale():
    with mock_tfds(["mnist"], num_examples=16):
        for preprocess in data.preprocess_names("mnist"):
            loaded = data.load("mnist", preprocess=preprocess)
            images, labels = batches(loaded.train(8, 0, 0))[0]
            assert loaded.input_shape == (28, 28, 1) and images.shape == (8, 28, 28, 1)
            assert -1.0 <= images.min() and images.max() <= 1.0


def test_image_size_resizes_tfds_images():
    with mock_tfds(["mnist"], num_examples=16):
        loaded = data.load("mnist", image_size=14)
        assert loaded.input_shape == (14, 14, 1)
        assert batches(loaded.validation(16))[0][0].shape == (16, 14, 14, 1)


def test_imagenet2012_loads_under_mock():
    with mock_tfds(["imagenet2012"], num_examples=8, splits=("train", "validation")):
        loaded = data.load("imagenet2012")
        assert (loaded.input_shape, loaded.num_classes, loaded.validation_split) == ((224, 224, 3), 1000, "validation")
        images, labels = batches(loaded.train(4, 0, 0))[0]
        assert images.shape == (4, 224, 224, 3) and np.isfinite(images).all()
        assert batches(loaded.validation(8))[0][0].shape == (8, 224, 224, 3)


def test_unknown_preprocess_name():
    with pytest.raises(UsageError) as error:
        data.load("cifar10", preprocess="resize_flip")
    assert str(error.value) == (
        "Unknown preprocess function for cifar10 'resize_flip'; valid choices are: default, "
        "resize_and_flip. Did you mean 'resize_and_flip'?"
    )
    with pytest.raises(UsageError, match="valid choices are: default[.]"):
        data.describe("imagenet2012", preprocess="resize_and_flip")


def test_unknown_dataset_suggests_closest():
    with pytest.raises(UsageError) as error:
        data.load("cifar1")
    message = str(error.value)
    assert message.startswith("Unknown data set 'cifar1': neither a tfds data set (close tfds names are: cifar10, ")
    assert message.endswith("Did you mean 'cifar10'?")
    with pytest.raises(UsageError, match="Did you mean 'imagenet2012'"):
        data.describe("imagenet")


def test_unknown_version_and_non_image_dataset():
    with pytest.raises(UsageError, match=r"^Unknown cifar10 version '9\.9\.9'; valid choices are: 3\.0\.2\.$"):
        data.load("cifar10:9.9.9")
    with pytest.raises(UsageError, match="'glue' is not an image-classification data set"):
        data.describe("glue")


def test_unprepared_and_offline_answers_with_prepare_advice(tmp_path, monkeypatch):
    probed = []
    monkeypatch.setattr(network, "can_reach", lambda url, timeout=3.0: probed.append(url) or False)

    def download(self, *args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", download)
    with pytest.raises(RunError) as error:
        data.load("cifar10", data_dir=str(tmp_path))
    assert str(error.value) == (
        f"Data set 'cifar10' is not prepared under {tmp_path} and cannot be downloaded (no network): "
        "run `bnno prepare cifar10 --data-dir DIR` on a machine with network access, then pass --data-dir DIR."
    )
    assert probed == ["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"]
    with pytest.raises(RunError, match=r"cannot be downloaded to .*www\.cs\.toronto\.edu.* is unreachable"):
        data.prepare(["cifar10"], data_dir=str(tmp_path))


def test_prepare_downloads_when_reachable(tmp_path, monkeypatch):
    monkeypatch.setattr(network, "can_reach", lambda url, timeout=3.0: True)
    prepared = []
    monkeypatch.setattr(
        tfds.core.DatasetBuilder, "download_and_prepare", lambda self, *args, **kwargs: prepared.append(self.name)
    )
    data.prepare(["cifar10", "mnist"], data_dir=str(tmp_path))
    assert prepared == ["cifar10", "mnist"]


def test_imagenet_needs_manual_download(tmp_path):
    """ImageNet cannot be downloaded by tfds; the error says where its files go (and
    no network probe fires: the autouse fixture would fail)."""
    with pytest.raises(RunError, match=r"by hand into .*downloads/manual .*ILSVRC2012_img_train\.tar"):
        data.load("imagenet2012", data_dir=str(tmp_path))


def test_describe_is_offline(tmp_path):
    assert data.describe("imagenet2012", data_dir=str(tmp_path)) == ((224, 224, 3), 1000)
    assert data.describe("imagenet2012", image_size=128) == ((128, 128, 3), 1000)
    assert data.describe("cifar10", preprocess="resize_and_flip") == ((32, 32, 3), 10)
    assert data.describe("mnist") == ((28, 28, 1), 10)
    assert data.describe("cifar100:3.0.2") == ((32, 32, 3), 100)
    with pytest.raises(UsageError, match=r"^Image size 0 is not a positive whole number of pixels"):
        data.describe("cifar10", image_size=0)


def test_varying_size_tfds_images_need_an_image_size():
    with pytest.raises(UsageError, match="Images of data set 'cats_vs_dogs' differ in size; pass an image size"):
        data.describe("cats_vs_dogs")
    assert data.describe("cats_vs_dogs", image_size=64) == ((64, 64, 3), 2)


def test_names():
    assert data.known_datasets() == ["cifar10", "imagenet2012"]
    assert data.preprocess_names("cifar10") == ["default", "resize_and_flip"]
    assert data.preprocess_names("cifar10:3.0.2") == ["default", "resize_and_flip"]
    assert data.preprocess_names("imagenet2012") == ["default"]
    assert data.preprocess_names("fashion_mnist") == ["default", "resize_and_flip"]


def test_tfds_configs_are_not_folders(tmp_path):
    assert not data.is_folder("cifar10")
    assert not data.is_folder("imagenet2012_subset/10pct")
    assert data.is_folder(str(tmp_path))
    assert data.is_folder("my_images/")
    assert data.is_folder("./cifar10")


def test_prepared_tfds_data_set(tmp_path, monkeypatch):
    """The prepared, unmocked path, offline: BnnoTestDigits generates its examples."""
    assert BnnoTestDigits.name == "bnno_test_digits"
    monkeypatch.setattr(network, "can_reach", lambda url, timeout=3.0: True)
    loaded = data.load("bnno_test_digits", data_dir=str(tmp_path))
    assert (loaded.train_examples, loaded.validation_examples, loaded.validation_split) == (40, 10, "validation")
    assert (loaded.input_shape, loaded.num_classes) == ((8, 8, 1), 4)
    assert tfds.builder("bnno_test_digits", data_dir=str(tmp_path)).is_prepared()

    def epoch(epoch, seed):
        images, labels = zip(*batches(loaded.train(8, epoch, seed)))
        values = np.round((np.concatenate(images)[:, 0, 0, 0] + 1) * 127.5).astype(int)
        np.testing.assert_array_equal(np.concatenate(labels), values % 4)  # images keep their labels
        return values

    assert sorted(epoch(0, 1)) == list(range(40))
    np.testing.assert_array_equal(epoch(2, 1), epoch(2, 1))
    # Validation: every example once, in the order tfds stored them.
    validation = np.concatenate([images for images, _ in batches(loaded.validation(4))])
    stored = tfds.builder("bnno_test_digits", data_dir=str(tmp_path)).as_dataset(split="validation")
    values = np.round((validation[:, 0, 0, 0] + 1) * 127.5)
    np.testing.assert_array_equal(values, [example["image"][0, 0, 0] for example in stored.as_numpy_iterator()])
    assert sorted(values) == list(range(10))


def test_partial_shuffle_shuffles_files_deterministically(tmp_path, monkeypatch):
    """Data sets too large for a complete shuffle read their files in a seeded order
    first; that order too is a function of (seed, epoch)."""
    monkeypatch.setattr(network, "can_reach", lambda url, timeout=3.0: True)
    monkeypatch.setattr(dataset_module, "SHUFFLE_BUFFER_BYTES", 1)
    loaded = data.load("bnno_test_digits", data_dir=str(tmp_path))
    assert loaded.shuffle_buffer_size(batch_size=2) == 20 < loaded.train_examples

    def order(epoch):
        return np.concatenate([labels for _, labels in batches(loaded.train(2, epoch, 3))])

    np.testing.assert_array_equal(order(1), order(1))
    assert sorted(order(1)) == sorted(i % 4 for i in range(40))
