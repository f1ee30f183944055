"""Built-in demo data and models, trained in code (no downloads). TensorFlow is imported here.

The digits are scikit-learn's bundled 8x8 set (1,797 images, values 0..16),
upscaled bilinearly to 28x28 and scaled to 0..1 so they fit the seeds' MNIST
models. The split and the training are seeded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgequant._util import Progress, atomic_write, no_progress, quiet, quiet_tensorflow
from edgequant.types import Dataset

__all__ = ["digits_28x28", "split_digits", "seed_cnn", "train_seed_cnn", "TEST_FRACTION"]

TEST_FRACTION = 0.25


def digits_28x28() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as float32 (N, 28, 28, 1) in 0..1, with int64 labels."""
    from sklearn.datasets import load_digits

    from scipy.ndimage import zoom

    d = load_digits()
    images = d.images.astype(np.float32) / 16.0
    # order=1 is bilinear; 28/8 = 3.5 gives exactly 28x28.
    up = zoom(images, (1, 28 / 8, 28 / 8), order=1)
    return np.clip(up, 0.0, 1.0)[..., None].astype(np.float32), d.target.astype(np.int64)


def split_digits(seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, test): a seeded shuffle, the last quarter held out."""
    x, y = digits_28x28()
    idx = np.random.default_rng(seed).permutation(len(x))
    cut = int(len(x) * (1 - TEST_FRACTION))
    tr, te = idx[:cut], idx[cut:]
    return Dataset(x[tr], y[tr], "digits-train"), Dataset(x[te], y[te], "digits-test")


def seed_cnn():  # -> keras.Model; untyped so importing this module needs no TensorFlow
    """The seed 000 CNN: Conv2D 32 (3x3, ReLU), MaxPool, Flatten, Dense 128 ReLU, Dense 10 softmax."""
    quiet_tensorflow()
    with quiet():
        import keras
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, (3, 3), activation="relu"),
        keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ], name="seed_cnn")


def train_seed_cnn(train: Dataset, path: Path, epochs: int = 5, seed: int = 0,
                   progress: Progress = no_progress) -> Path:
    """Train the seed CNN (Adam, sparse cross-entropy, as seed 000) and save it as .keras atomically."""
    quiet_tensorflow()
    with quiet():
        import keras

        keras.utils.set_random_seed(seed)
        model = seed_cnn()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        report = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: progress("train seed CNN", epoch + 1, epochs))
        model.fit(train.x, train.y, epochs=epochs, batch_size=32, verbose=0, callbacks=[report])
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.part.keras")
        model.save(tmp)
    atomic_write(path, tmp.read_bytes())
    tmp.unlink()
    return path
