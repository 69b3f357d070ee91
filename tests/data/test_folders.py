"""Image folders <root>/<split>/<class>/<image>, generated in each test."""

import os

import numpy as np
import pytest
import tensorflow as tf

import bnno.data as data
from bnno.errors import UsageError

# Created out of order on purpose: labels must follow the sorted names.
CLASSES = ("cat", "ant", "bee")
SORTED = sorted(CLASSES)


def write_image(path, size, value, fmt="png"):
    """A constant image of ``value`` (so the label can be read back from the pixels)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = tf.fill([size[0], size[1], 3], tf.constant(value, tf.uint8))
    encoded = tf.io.encode_png(image) if fmt == "png" else tf.io.encode_jpeg(image, quality=100)
    tf.io.write_file(str(path), encoded)


def value_of(name):
    """Pixel value of the images of class ``name``: 40 * (its label) + 20."""
    return 40 * SORTED.index(name) + 20


def make_folder(root, counts=None, size=(8, 6), validation="validation", sizes=None):
    counts = counts or {"train": 4, validation: 2}
    for split, count in counts.items():
        for name in CLASSES:
            for i in range(count):
                image_size = sizes[i % len(sizes)] if sizes else size
                write_image(root / split / name / f"{i}.png", image_size, value_of(name))
    return root


def batches(dataset):
    return [(images.numpy(), labels.numpy()) for images, labels in dataset]


def test_folder_loads(tmp_path):
    root = make_folder(tmp_path / "pets")
    loaded = data.load(str(root))
    assert loaded.name == str(root)
    assert loaded.input_shape == (8, 6, 3)
    assert loaded.num_classes == 3
    assert (loaded.train_examples, loaded.validation_examples, loaded.validation_split) == (12, 6, "validation")

    epoch = batches(loaded.train(batch_size=5, epoch=0, seed=0))
    assert [images.shape for images, _ in epoch] == [(5, 8, 6, 3), (5, 8, 6, 3)]  # 12 // 5, remainder dropped
    validation = batches(loaded.validation(batch_size=4))
    assert [len(labels) for _, labels in validation] == [4, 2]
    for images, labels in epoch + validation:
        assert images.dtype == np.float32 and labels.dtype == np.int32
        # Labels follow the sorted class names: pixels are 40 * label + 20, scaled.
        expected = (40 * labels + 20).astype(np.float32) / np.float32(127.5) - 1
        np.testing.assert_array_equal(images, np.broadcast_to(expected[:, None, None, None], images.shape))
    assert sorted(np.concatenate([labels for _, labels in validation])) == [0, 0, 1, 1, 2, 2]


def test_folder_train_is_a_function_of_seed_and_epoch(tmp_path):
    root = str(make_folder(tmp_path / "pets"))

    def labels(epoch, seed):
        loaded = data.load(root, preprocess="resize_and_flip")
        return np.concatenate([labels for _, labels in batches(loaded.train(12, epoch, seed))])

    np.testing.assert_array_equal(labels(4, 9), labels(4, 9))
    assert sorted(labels(4, 9)) == [0] * 4 + [1] * 4 + [2] * 4


def test_folder_resize_and_flip(tmp_path):
    loaded = data.load(str(make_folder(tmp_path / "pets")), preprocess="resize_and_flip")
    images, labels = batches(loaded.train(12, 0, 0))[0]
    assert images.shape == (12, 8, 6, 3)
    # Constant images padded by 4 zero pixels and cropped back: only the image value
    # and the padding's -1 occur.
    for image, label in zip(images, labels):
        value = np.float32(40 * label + 20) / np.float32(127.5) - 1
        assert set(np.unique(image)) <= {np.float32(-1.0), value}
    assert (images == -1.0).any()


def test_test_split_jpeg_and_other_files(tmp_path):
    root = tmp_path / "mixed"
    write_image(root / "train" / "b" / "one.JPG", (16, 16), 100, fmt="jpeg")
    write_image(root / "train" / "a" / "nested" / "two.png", (16, 16), 50)
    write_image(root / "test" / "a" / "three.jpeg", (16, 16), 50, fmt="jpeg")
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    os.makedirs(root / "train" / ".ipynb_checkpoints")
    loaded = data.load(str(root))
    assert (loaded.num_classes, loaded.train_examples, loaded.validation_split) == (2, 2, "test")
    images, labels = batches(loaded.validation(8))[0]
    assert labels.tolist() == [0] and images.shape == (1, 16, 16, 3)


def test_mixed_sizes_need_an_image_size(tmp_path):
    root = make_folder(tmp_path / "mixed", sizes=[(8, 8), (12, 10)])
    with pytest.raises(UsageError) as error:
        data.load(str(root))
    message = str(error.value)
    assert message.startswith(f"Images in '{root}' differ in size (8x8 for ")
    assert "12x10 for" in message
    assert message.endswith("pass an image size (--image-size N) to resize them all to N x N.")

    loaded = data.load(str(root), image_size=5)
    assert loaded.input_shape == (5, 5, 3)
    images, labels = batches(loaded.train(12, 0, 0))[0]
    assert images.shape == (12, 5, 5, 3)
    # Resizing a constant image keeps it constant.
    expected = (40 * labels + 20).astype(np.float32) / np.float32(127.5) - 1
    np.testing.assert_array_equal(images, np.broadcast_to(expected[:, None, None, None], images.shape))
    assert data.describe(str(root), image_size=5) == ((5, 5, 3), 3)


def test_describe_folder(tmp_path):
    root = str(make_folder(tmp_path / "pets", size=(10, 7)))
    assert data.describe(root) == ((10, 7, 3), 3)
    assert data.describe(root, preprocess="resize_and_flip") == ((10, 7, 3), 3)
    assert data.preprocess_names(root) == ["default", "resize_and_flip"]


def test_missing_splits(tmp_path):
    with pytest.raises(UsageError, match=r"has no validation or test split \(it has: train\); lay it out as"):
        data.load(str(make_folder(tmp_path / "only_train", counts={"train": 1})))
    with pytest.raises(UsageError, match=r"has no train split \(it has: validation\)"):
        data.load(str(make_folder(tmp_path / "only_validation", counts={"validation": 1})))
    with pytest.raises(UsageError, match=r"^Image folder '.*nowhere' does not exist; an image folder is laid out as"):
        data.load(str(tmp_path / "nowhere"))


def test_unknown_validation_class(tmp_path):
    root = make_folder(tmp_path / "pets", counts={"train": 1})
    write_image(root / "validation" / "bea" / "0.png", (8, 6), 0)
    with pytest.raises(UsageError) as error:
        data.load(str(root))
    assert str(error.value) == (
        f"Unknown class in {os.path.join(str(root), 'validation')} (classes come from train) 'bea'; "
        "valid choices are: ant, bee, cat. Did you mean 'bee'?"
    )


def test_unknown_preprocess_for_folder(tmp_path):
    root = str(make_folder(tmp_path / "pets"))
    with pytest.raises(UsageError, match=r"valid choices are: default, resize_and_flip\. Did you mean 'default'\?"):
        data.load(root, preprocess="defualt")


def test_cache_name_is_file_safe(tmp_path):
    root = make_folder(tmp_path / "pets")
    loaded = data.load(str(root) + os.sep, cache=str(tmp_path / "cache"), image_size=4)
    batches(loaded.validation(6))
    names = os.listdir(tmp_path / "cache")
    assert names and all(name.startswith("pets-") and "-4px-validation" in name for name in names), names
