"""compare's variant building: TensorFlow's converter in a second process beside the rest, the same models."""

from __future__ import annotations

import importlib

import pytest

import edgequant
from edgequant.types import EngineName, Scheme

compare_module = importlib.import_module("edgequant.compare")  # the package's name `compare` is the function
_SideLane = compare_module._SideLane


def _models(seed_cnn_path, digits) -> dict[tuple[str, str], bytes]:
    result = edgequant.compare(seed_cnn_path, data=digits["test"], calibration=digits["calibration"], samples=20,
                               schemes="dynamic,int8", engines="litert,tflite-converter", runs=2, warmup=0)
    assert all(v.error is None for v in result.variants)
    return {(v.scheme, v.engine): v for v in result.variants}


@pytest.mark.slow
def test_the_side_lane_builds_the_same_models_as_one_process(seed_cnn_path, digits, monkeypatch) -> None:
    """With two cores the converter's pairs are built in a child process; with one, here. Same rows, same order."""
    monkeypatch.setattr(compare_module.os, "cpu_count", lambda: 2)
    started = []
    real_start = _SideLane.start

    def start(*args, **kwargs):
        lane = real_start(*args, **kwargs)
        started.append(lane)
        return lane

    monkeypatch.setattr(_SideLane, "start", start)
    two = _models(seed_cnn_path, digits)
    assert len(started) == 1 and started[0] is not None and started[0].proc.exitcode is not None
    monkeypatch.setattr(compare_module.os, "cpu_count", lambda: 1)
    one = _models(seed_cnn_path, digits)
    assert len(started) == 1  # no lane on one core
    assert list(two) == list(one) == [("dynamic", "litert"), ("dynamic", "tflite-converter"), ("int8", "litert"),
                                      ("int8", "tflite-converter")]
    for pair in one:
        assert two[pair].accuracy == one[pair].accuracy and two[pair].sqnr_db == one[pair].sqnr_db, pair
        assert two[pair].size_bytes == one[pair].size_bytes, pair


class _DeadPipe:
    def poll(self) -> bool:
        return True

    def recv(self):
        raise EOFError

    def close(self) -> None:
        pass


class _DeadProcess:
    exitcode = -11

    def join(self, timeout=None) -> None:
        pass

    def is_alive(self) -> bool:
        return False


def test_a_side_lane_that_dies_leaves_error_rows_for_its_pairs() -> None:
    """A crash in the converter's process (native code) costs its own variants, each a one-line error."""
    pairs = [(Scheme.FP16, EngineName.TFLITE_CONVERTER), (Scheme.INT8, EngineName.TFLITE_CONVERTER)]
    lane = _SideLane(_DeadProcess(), _DeadPipe(), pairs)
    done: dict = {}
    lane.collect(done)
    assert not lane.waiting and set(done) == set(pairs)
    for scheme, eng, model, error in done.values():
        assert model is None and "stopped in its process" in error and "(SIGSEGV)" in error
    lane.stop()
