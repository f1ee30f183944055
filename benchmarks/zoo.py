"""A zoo of small Keras models for the edgequant benchmark, trained in code and cached.

Every model is trained on the bundled digits (scikit-learn's 8x8 set upscaled
to 28x28, :func:`edgequant.train.split_digits` with seed 0: 1,347 training and
450 held-out images), so nothing is downloaded. Each entry of :data:`ZOO` is a
:class:`ZooSpec` whose ``builder`` returns an uncompiled Keras model;
:func:`load` trains it once and caches, under ``cache_dir/<name>/``:

    model.keras        the trained model (Keras 3 format, loadable with safe_mode)
    test.npz           x (float32, batch first) and y (int64): the held-out digits
    calibration.npz    x: at most 500 samples of the training split (seeded pick)
    meta.json          the spec version, train seconds, Keras held-out accuracy, ...

Conventions shared by every model:

* Inputs are 0..1 float32 digits. ``input_kind`` "image" means (N, 28, 28, 1);
  "rows" means (N, 28, 28) read as 28 time steps of 28 features (the LSTM).
* Every model ends in a softmax over the 10 digit classes (probabilities, not
  logits), like the seed CNN.
* Training: ``keras.utils.set_random_seed(0)`` before building, Adam
  (learning rate 1e-3), sparse categorical cross-entropy, batch size 32, the
  spec's epochs. The split is fixed (seed 0). On one machine a rebuild gives
  bit-identical weights; on another CPU, TensorFlow's float kernels can give a
  model whose held-out top-1 differs by an image or two. ``load(..., seed=k)``
  trains replicate k of a model on the same split (benchmarks/replicates.py).
* Only standard Keras layers, no ``Lambda`` and no custom classes: edgequant
  loads ``.keras`` files with safe mode on and without this module.

A cached entry is used when its meta.json names the spec's current ``version``
(bump the version whenever a builder, its epochs or its data change); using it
imports no TensorFlow. Files are written to a temporary name and renamed, and
meta.json is written last, so an interrupted run never looks cached.

Measured on a 2-core x86 CPU (TensorFlow 2.21, Keras 3.15), held-out digits
(450), float .tflite from ``edgequant.convert``; train seconds are build + fit
(+ finish) with the machine idle, and in brackets with a second CPU-bound
process running. Two runs gave bit-identical weights.

    model            params   train s      Keras acc   float .tflite acc
    seed_cnn        693,962    7  [7]        96.67%        96.67%
    seed_mlp        101,770    3  [4]        96.22%        96.22%
    lenet            61,706    9 [11]        96.67%        96.67%
    mobilenet_like   18,858   20 [29]        98.22%        98.22%
    resnet_like      38,682   18 [24]        98.89%        98.89%
    lstm             24,458    8 [10]        95.33%        95.33%
    transformer      10,730   13 [15]        96.22%        96.22%
    outlier_mlp     337,674    4  [6]        97.78%        97.78%

outlier_mlp: max / 99.9th percentile |activation| of "hidden" is 73 on the
held-out digits (92 on the training digits; units 114 and 160 scaled 207x and
329x). Calibration matters: int8 with 500 calibration samples gives 96.89% and
an SQNR of 23.7 dB with tflite-converter (min-max ranges: "hidden" gets an int8
scale of 1.25, so ordinary activations land on 0-3 levels), but 97.56% and
32.8 dB with litert (averaged per-sample ranges, scale 0.065, clip the
outliers); seed_mlp loses at most 0.2 points with either.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgequant._util import Progress, atomic_dir_file, atomic_npz, no_progress, quiet, quiet_tensorflow
from edgequant.data import select_samples
from edgequant.train import seed_cnn, split_digits

__all__ = ["ZooSpec", "ZooModel", "ZOO", "UnknownModelError", "DEFAULT_CACHE", "CALIBRATION_SAMPLES",
           "get_spec", "load", "hidden_outlier_ratio", "training_split"]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = REPO_ROOT / ".bench-cache"
CALIBRATION_SAMPLES = 500
SEED = 0
# The layout of a cache entry; bump to invalidate every entry at once. (2: entries
# written while the zoo was being developed, all with spec version "1", are stale.)
CACHE_FORMAT = 2

IMAGE = "image"  # x is (N, 28, 28, 1)
ROWS = "rows"    # x is (N, 28, 28): 28 time steps (rows) of 28 features (pixels)


@dataclasses.dataclass(frozen=True)
class ZooSpec:
    """How to build and train one zoo model."""

    name: str
    description: str
    builder: Callable[[], Any]  # -> an uncompiled keras.Model; imports Keras only when called
    input_kind: str             # IMAGE or ROWS
    epochs: int
    version: str = "1"          # bump when the builder, epochs or data change: it invalidates the cache
    batch_size: int = 32
    learning_rate: float = 1e-3
    # After training: (trained model, training x) -> (the model to save, facts
    # for meta.json). For the LSTM this swaps in the unrolled export graph, for
    # outlier_mlp it plants the outliers.
    finish: Callable[[Any, np.ndarray], tuple[Any, dict[str, Any]]] | None = None


@dataclasses.dataclass(frozen=True)
class ZooModel:
    """A trained zoo model on disk and its data."""

    name: str
    keras_path: Path
    test_path: Path
    calibration_path: Path
    description: str
    train_seconds: float
    cached: bool


class UnknownModelError(KeyError):
    """A name that is not in :data:`ZOO`; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would repr() the message, quotes and all
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- builders
# Each imports Keras when called, never at module import.

def _keras() -> Any:
    quiet_tensorflow()
    with quiet():
        import keras
    return keras


def build_seed_mlp() -> Any:
    """Flatten, Dense 128 ReLU, Dense 10 softmax; input (28, 28, 1) so it shares the CNNs' data."""
    keras = _keras()
    L = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Flatten(),
        L.Dense(128, activation="relu"),
        L.Dense(10, activation="softmax"),
    ], name="seed_mlp")


def build_lenet() -> Any:
    """LeNet-5 style with ReLU and max pooling: conv 6@5x5 'same' + pool, conv 16@5x5 + pool, 120, 84, 10."""
    keras = _keras()
    L = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(6, 5, padding="same", activation="relu"),   # 28x28x6, as classic LeNet on 28x28
        L.MaxPooling2D(2),                                    # 14x14x6
        L.Conv2D(16, 5, activation="relu"),                   # 10x10x16
        L.MaxPooling2D(2),                                    # 5x5x16
        L.Flatten(),
        L.Dense(120, activation="relu"),
        L.Dense(84, activation="relu"),
        L.Dense(10, activation="softmax"),
    ], name="lenet")


# BatchNormalization's default momentum (0.99) leaves the moving statistics far
# from the data after a few hundred steps on 1,347 images; 0.9 settles them.
_BN_MOMENTUM = 0.9


def build_mobilenet_like() -> Any:
    """MobileNet v1/v2 flavour on 28x28x1 (no padding to 32x32).

    stem conv 3x3/2 (16) -> depthwise-separable block (dw 3x3, pw 1x1 -> 24)
    -> inverted residual /2 (expand x4, dw 3x3/2, linear project -> 32)
    -> inverted residual (expand x4, dw 3x3, linear project -> 32) + Add
    -> GlobalAveragePooling2D -> Dense 10. Every conv is bias-free with
    BatchNormalization; activations are ReLU6, projections are linear.
    """
    keras = _keras()
    L = keras.layers

    def bn(x: Any) -> Any:
        return L.BatchNormalization(momentum=_BN_MOMENTUM)(x)

    def relu6(x: Any) -> Any:
        return L.ReLU(6.0)(x)

    def inverted_residual(x: Any, out: int, stride: int, expand: int = 4) -> Any:
        c_in = x.shape[-1]
        h = relu6(bn(L.Conv2D(c_in * expand, 1, use_bias=False)(x)))                       # expand 1x1
        h = relu6(bn(L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(h)))  # depthwise 3x3
        h = bn(L.Conv2D(out, 1, use_bias=False)(h))                                        # project 1x1, linear
        return L.Add()([x, h]) if stride == 1 and c_in == out else h

    inp = keras.Input((28, 28, 1))
    x = relu6(bn(L.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inp)))  # 14x14x16
    x = relu6(bn(L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)))          # depthwise-separable
    x = relu6(bn(L.Conv2D(24, 1, use_bias=False)(x)))                               # 14x14x24
    x = inverted_residual(x, 32, stride=2)                                          # 7x7x32
    x = inverted_residual(x, 32, stride=1)                                          # 7x7x32, residual Add
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(10, activation="softmax")(x)
    return keras.Model(inp, out, name="mobilenet_like")


def build_resnet_like() -> Any:
    """A small ResNet on 28x28x1.

    stem conv 3x3 (16) -> basic block (16, identity skip) -> strided basic block
    (32, /2, skip = 1x1 conv /2 + BN) -> basic block (32, identity) -> GAP ->
    Dense 10. Basic block: conv 3x3, BN, ReLU, conv 3x3, BN, Add, ReLU.
    """
    keras = _keras()
    L = keras.layers

    def conv_bn(x: Any, filters: int, kernel: int, stride: int = 1) -> Any:
        x = L.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False)(x)
        return L.BatchNormalization(momentum=_BN_MOMENTUM)(x)

    def block(x: Any, filters: int, stride: int = 1) -> Any:
        h = L.ReLU()(conv_bn(x, filters, 3, stride))
        h = conv_bn(h, filters, 3)
        skip = x if stride == 1 and x.shape[-1] == filters else conv_bn(x, filters, 1, stride)  # 1x1 projection
        return L.ReLU()(L.Add()([skip, h]))

    inp = keras.Input((28, 28, 1))
    x = L.ReLU()(conv_bn(inp, 16, 3))   # 28x28x16
    x = L.MaxPooling2D(2)(x)            # 14x14x16
    x = block(x, 16)
    x = block(x, 32, stride=2)          # 7x7x32, 1x1 conv skip projection
    x = block(x, 32)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(10, activation="softmax")(x)
    return keras.Model(inp, out, name="resnet_like")


def build_lstm(unroll: bool = False) -> Any:
    """LSTM(64) reading a digit row by row: input (28, 28) = (time, features), then Dense 10 softmax.

    Conversion: the default (unroll=False) graph is a tf.while loop over
    TensorList ops, and TensorFlow 2.21's converter fails on it ("Lowering tensor
    list ops is failed. Please consider using Select TF ops"), which LiteRT's
    builtin runtime cannot run. unroll=True (the first fallback we tried) makes
    Keras emit the 28 steps as plain ops (FULLY_CONNECTED, LOGISTIC, TANH, MUL,
    ADD), which convert and run with builtins only, and keeps a dynamic batch, so
    no fixed batch size was needed. Unrolling only changes the graph, not the
    weights: we train the faster loop version and copy the weights into the
    unrolled one for saving (see :func:`_unroll_lstm`).
    """
    keras = _keras()
    L = keras.layers
    return keras.Sequential([
        keras.Input((28, 28)),
        L.LSTM(64, unroll=unroll),
        L.Dense(10, activation="softmax"),
    ], name="lstm")


def _unroll_lstm(model: Any, train_x: np.ndarray) -> tuple[Any, dict[str, Any]]:
    export = build_lstm(unroll=True)
    export.set_weights(model.get_weights())
    return export, {"export": "trained with unroll=False, saved with unroll=True (same weights)"}


def build_transformer(blocks: int = 1) -> Any:
    """A small pre-norm Transformer encoder on 28x28x1, the image rows as tokens.

    Token + learned position embedding in one stock layer: Reshape to 28 tokens
    (rows) of 28 pixels, then EinsumDense "btc,cd->btd" with bias_axes "td":
    the kernel embeds each row into 32 channels and the bias, of shape
    (28 tokens, 32), is one learned vector per position. (A separate
    EinsumDense "btd,d->btd" position layer after a Conv2D 7x7/7 patch
    embedding converted to a BATCH_MATMUL whose dynamic-batch reshape fails in
    LiteRT, "XNNPack delegate failed to reshape", so it is not used.)
    Then ``blocks`` (1) pre-norm blocks: LayerNorm -> MultiHeadAttention (4 heads,
    key_dim 8) -> residual Add, LayerNorm -> Dense 64 GELU -> Dense 32 -> residual
    Add; a final LayerNorm, GlobalAveragePooling1D over tokens, Dense 10 softmax.
    Converts with builtins only and keeps a dynamic batch. One block, not two:
    two blocks reached the same held-out accuracy (96% after 12 epochs) but
    took 19 s to train on 2 cores, one block takes 10-13 s for 16 epochs.
    """
    keras = _keras()
    L = keras.layers
    dim, tokens, heads, key_dim, mlp = 32, 28, 4, 8, 64
    inp = keras.Input((28, 28, 1))
    x = L.Reshape((tokens, 28), name="rows_as_tokens")(inp)
    x = L.EinsumDense("btc,cd->btd", output_shape=(tokens, dim), bias_axes="td",
                      name="token_and_position_embedding")(x)
    for i in range(blocks):
        h = L.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln1")(x)
        h = L.MultiHeadAttention(heads, key_dim, name=f"block{i}_attention")(h, h)
        x = L.Add(name=f"block{i}_add1")([x, h])
        h = L.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln2")(x)
        h = L.Dense(mlp, activation="gelu", name=f"block{i}_mlp1")(h)
        h = L.Dense(dim, name=f"block{i}_mlp2")(h)
        x = L.Add(name=f"block{i}_add2")([x, h])
    x = L.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    x = L.GlobalAveragePooling1D()(x)
    out = L.Dense(10, activation="softmax")(x)
    return keras.Model(inp, out, name="transformer")


# outlier_mlp: at most this many hidden units carry the outliers; each is scaled so
# that its largest training activation is OUTLIER_TARGET x the 99.9th percentile
# of the whole hidden tensor.
OUTLIER_UNITS = 3
OUTLIER_TARGET = 100.0
# The planted values must stay under 0.1% of the hidden tensor's values, or the
# 99.9th percentile lands on them; keep them under 0.075% of it on the training data.
OUTLIER_VALUE_BUDGET = 0.00075
OUTLIER_MIN_RATIO = 10.0


def build_outlier_mlp() -> Any:
    """Flatten -> Dense 256 ReLU ("hidden", no normalization) -> Dense 512 ReLU ("wide") -> Dense 10 softmax.

    Where the outliers are: in the output of "hidden" (256 ReLU units). After
    training, :func:`_plant_outliers` takes the live hidden units that fire most
    rarely on the training digits (on at least 1% of them; as many, up to 3, as
    keep their nonzero values under 0.075% of the tensor's values) and scales
    each one's incoming weights and bias by a factor f (a few hundred) chosen
    so that its largest training activation becomes 100x the 99.9th percentile
    of the whole tensor, dividing its outgoing weights in "wide" by the same f.
    ReLU is positively homogeneous (relu(f z) = f relu(z)), so the model
    computes the same function and keeps its float accuracy, but on the few
    digits that fire those units "hidden" holds values up to ~100x larger than
    the rest of the tensor. They are rare, so max |activation| is far above
    the 99.9th percentile: a min-max calibrated per-tensor int8 scale spends
    almost the whole range on them and the ordinary activations collapse onto a
    few levels, while a percentile or averaged calibration clips them (and
    loses what those units say). The matching rows of "wide" are f times
    smaller than the rest of their columns, as with real outlier features,
    which also stresses per-channel weight quantization. The input is the usual
    0..1 digits (no data scaling).

    Verified: :func:`hidden_outlier_ratio` gives max |activation| / 99.9th
    percentile |activation| of "hidden" on the held-out digits (stated in the
    zoo report); :func:`_plant_outliers` refuses to save a model whose ratio on
    the training digits is under 10.
    """
    keras = _keras()
    L = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Flatten(),
        L.Dense(256, activation="relu", name="hidden"),
        L.Dense(512, activation="relu", name="wide"),
        L.Dense(10, activation="softmax", name="classes"),
    ], name="outlier_mlp")


def _outlier_ratio(acts: np.ndarray) -> float:
    acts = np.abs(acts)
    return float(acts.max() / np.percentile(acts, 99.9))


def _plant_outliers(model: Any, train_x: np.ndarray) -> tuple[Any, dict[str, Any]]:
    keras = _keras()
    hidden, wide = model.get_layer("hidden"), model.get_layer("wide")
    probe = keras.Model(model.inputs, hidden.output)
    with quiet():
        acts = probe.predict(train_x, verbose=0)
    firing = (acts > 0).mean(axis=0)
    budget = OUTLIER_VALUE_BUDGET * acts.shape[1]  # in units of "fires on every sample"
    units: list[int] = []
    for u in np.argsort(firing, kind="stable"):  # rarest first; ties by index, so reproducible
        if firing[u] < 0.01:
            continue
        if len(units) == OUTLIER_UNITS or firing[units].sum() + firing[u] > budget:
            break
        units.append(int(u))
    factors = (OUTLIER_TARGET * np.percentile(acts, 99.9) / acts[:, units].max(axis=0)).astype(np.float32)
    kernel, bias = hidden.get_weights()
    kernel[:, units] *= factors
    bias[units] *= factors
    hidden.set_weights([kernel, bias])
    kernel2, bias2 = wide.get_weights()
    kernel2[units, :] /= factors[:, None]
    wide.set_weights([kernel2, bias2])
    with quiet():
        ratio = _outlier_ratio(probe.predict(train_x, verbose=0))
    if ratio < OUTLIER_MIN_RATIO:
        raise RuntimeError(f"outlier_mlp: expected max/p99.9 |activation| of 'hidden' >= {OUTLIER_MIN_RATIO:g} "
                           f"after scaling units {units}, found {ratio:.1f}; change the builder or its epochs")
    return model, {"outlier_layer": "hidden", "outlier_units": units,
                   "outlier_factors": [round(float(f), 2) for f in factors],
                   "outlier_firing_fraction": [round(float(firing[u]), 4) for u in units],
                   "outlier_ratio_train": round(ratio, 2)}


def hidden_outlier_ratio(keras_path: Path, x: np.ndarray, layer: str = "hidden") -> float:
    """max |activation| / 99.9th percentile |activation| of ``layer``'s output on ``x`` (imports TensorFlow)."""
    keras = _keras()
    with quiet():
        model = keras.models.load_model(keras_path, compile=False)
        acts = keras.Model(model.inputs, model.get_layer(layer).output).predict(x, verbose=0)
    return _outlier_ratio(acts)


# --------------------------------------------------------------------------- registry

def _spec(*args: Any, **kwargs: Any) -> tuple[str, ZooSpec]:
    spec = ZooSpec(*args, **kwargs)
    return spec.name, spec


ZOO: dict[str, ZooSpec] = dict([
    _spec("seed_cnn", "The seed CNN (edgequant.train.seed_cnn): Conv2D 32 3x3, MaxPool, Flatten, Dense 128, "
          "Dense 10; digits 28x28x1.", seed_cnn, IMAGE, epochs=5),
    _spec("seed_mlp", "Flatten, Dense 128 ReLU, Dense 10 softmax; digits 28x28x1.", build_seed_mlp, IMAGE, epochs=10),
    _spec("lenet", "LeNet-5 style: Conv 6 5x5 'same' + MaxPool, Conv 16 5x5 + MaxPool, Dense 120, 84, 10 "
          "(ReLU); digits 28x28x1.", build_lenet, IMAGE, epochs=10),
    _spec("mobilenet_like", "Depthwise-separable and inverted residual blocks (expand 1x1, depthwise 3x3, linear "
          "project 1x1, Add) with BatchNorm and ReLU6, GAP, Dense 10; digits 28x28x1.",
          build_mobilenet_like, IMAGE, epochs=10),
    _spec("resnet_like", "Basic residual blocks with BatchNorm and Add, one strided block with a 1x1 conv skip "
          "projection, GAP, Dense 10; digits 28x28x1.", build_resnet_like, IMAGE, epochs=8),
    _spec("lstm", "LSTM(64) over the 28 rows of a digit (input (28, 28) = time x features), Dense 10; saved "
          "unrolled so it converts to LiteRT builtins.", build_lstm, ROWS, epochs=12, finish=_unroll_lstm),
    _spec("transformer", "Transformer encoder: rows as 28 tokens, embedding to 32 with a learned position "
          "embedding, 1 block of LayerNorm + 4-head attention + LayerNorm + GELU MLP, GAP, Dense 10; digits 28x28x1.",
          build_transformer, IMAGE, epochs=16),
    _spec("outlier_mlp", "Flatten, Dense 256 ReLU ('hidden'), Dense 512 ReLU, Dense 10, with a few rarely firing "
          "hidden units scaled a few hundred x (function-preserving): activation outliers for calibration studies.",
          build_outlier_mlp, IMAGE, epochs=8, finish=_plant_outliers),
])


def get_spec(name: str) -> ZooSpec:
    """The spec called ``name``, or :class:`UnknownModelError` listing the known names."""
    try:
        return ZOO[name]
    except (KeyError, TypeError):
        raise UnknownModelError(
            f"unknown zoo model {name!r}: expected one of {', '.join(ZOO)}") from None


# --------------------------------------------------------------------------- data, training, cache

def _data(kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train x, train y, test x, test y, calibration x) shaped for ``kind``."""
    train, test = split_digits(SEED)
    calib = select_samples(train, CALIBRATION_SAMPLES, seed=SEED)

    def shape(x: np.ndarray) -> np.ndarray:
        x = x[..., 0] if kind == ROWS else x
        return np.ascontiguousarray(x, dtype=np.float32)

    return (shape(train.x), train.y.astype(np.int64), shape(test.x), test.y.astype(np.int64), shape(calib.x))


def training_split(input_kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the training split the zoo models were trained on, shaped for ``input_kind``.

    Methods that train (qat) get this and nothing else: the held-out test split is for evaluation only.
    """
    x, y, _, _, _ = _data(input_kind)
    return x, y


def _paths(folder: Path) -> dict[str, Path]:
    return {"keras": folder / "model.keras", "test": folder / "test.npz",
            "calibration": folder / "calibration.npz", "meta": folder / "meta.json"}


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _train(spec: ZooSpec, x: np.ndarray, y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
           keras_path: Path, progress: Progress, seed: int = SEED) -> dict[str, Any]:
    """Build, train, finish and save the model; returns the facts meta.json records."""
    keras = _keras()
    import tensorflow as tf

    start = time.perf_counter()
    with quiet():
        keras.utils.set_random_seed(seed)
        model = spec.builder()
        model.compile(optimizer=keras.optimizers.Adam(spec.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        report = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: progress(f"train {spec.name}", epoch + 1, spec.epochs))
        model.fit(x, y, epochs=spec.epochs, batch_size=spec.batch_size, verbose=0, callbacks=[report])
        notes: dict[str, Any] = {}
        if spec.finish is not None:
            model, notes = spec.finish(model, x)
    seconds = time.perf_counter() - start
    with quiet():
        probs = model.predict(test_x, batch_size=256, verbose=0)
        tmp = keras_path.with_name(f".{keras_path.stem}.{os.getpid()}.part.keras")
        try:
            model.save(tmp)
            os.replace(tmp, keras_path)
        finally:
            tmp.unlink(missing_ok=True)
    return {"train_seconds": round(seconds, 3),
            "params": int(model.count_params()),
            "keras_test_accuracy": round(float((probs.argmax(axis=1) == test_y).mean()), 6),
            "keras_version": keras.__version__, "tensorflow_version": tf.__version__, **notes}


def load(name: str, cache_dir: Path = DEFAULT_CACHE, progress: Progress | None = None, seed: int = SEED) -> ZooModel:
    """The zoo model ``name``: trained and saved on first use, read from ``cache_dir/<name>/`` after.

    ``progress(step, done, total)`` is called once per training epoch. A cache
    hit imports no TensorFlow. ``seed`` other than the zoo's seeds another
    training run of the same model (weights initialisation and batch order) on
    the same data split, kept in ``cache_dir/<name>-seed<seed>/``: a replicate
    for judging a method on more than one trained instance.
    """
    spec = get_spec(name)
    progress = progress or no_progress
    folder = Path(cache_dir) / (spec.name if seed == SEED else f"{spec.name}-seed{seed}")
    paths = _paths(folder)
    meta = _read_meta(paths["meta"])
    hit = (meta is not None and meta.get("version") == spec.version and meta.get("format") == CACHE_FORMAT
           and all(p.is_file() for p in paths.values()))
    if not hit:
        folder.mkdir(parents=True, exist_ok=True)
        paths["meta"].unlink(missing_ok=True)  # a stale entry stops counting as complete right away
        x, y, test_x, test_y, calib_x = _data(spec.input_kind)
        atomic_npz(paths["test"], x=test_x, y=test_y)
        atomic_npz(paths["calibration"], x=calib_x)
        facts = _train(spec, x, y, test_x, test_y, paths["keras"], progress, seed)
        meta = {"name": spec.name, "version": spec.version, "format": CACHE_FORMAT,
                "description": spec.description, "input_kind": spec.input_kind,
                "input_shape": [None, *test_x.shape[1:]], "epochs": spec.epochs, "batch_size": spec.batch_size,
                "learning_rate": spec.learning_rate, "seed": seed, "train_samples": len(x),
                "test_samples": len(test_x), "calibration_samples": len(calib_x), **facts}
        # Last, so that a cache entry with meta.json is a complete one.
        atomic_dir_file(paths["meta"], json.dumps(meta, indent=2) + "\n")
    return ZooModel(name=spec.name, keras_path=paths["keras"], test_path=paths["test"],
                    calibration_path=paths["calibration"], description=spec.description,
                    train_seconds=float(meta["train_seconds"]), cached=hit)
