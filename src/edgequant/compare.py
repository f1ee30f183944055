"""compare: build the float model and every requested variant, measure all side by side.

Everything is measured in one process on the same data, and latency runs are
interleaved across variants (see evaluate/latency.py), so the ratios in the
table hold on a noisy machine even when absolute milliseconds drift.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
from collections.abc import Sequence
from typing import Any
from pathlib import Path

from edgequant._util import Progress, atomic_write, no_progress
from edgequant.calibrate import shared_stats
from edgequant.checks import check_labels, check_samples, classes_of
from edgequant.data import DataLike, select_samples
from edgequant.engines import ENGINES
from edgequant.errors import EdgequantError, InputError
from edgequant.evaluate import SLOW_TOLERANCE, evaluate_runners, label_output, slow_reasons
from edgequant.evaluate.metrics import gzip_size
from edgequant.graph import read_graph
from edgequant.provenance import Provenance, collect
from edgequant.pipeline import (DEFAULT_SAMPLES, check_measurement_options, load_checked_data, quantize,
                                resolve_model)
from edgequant.report import write_compare_files
from edgequant.runtime import Runner
from edgequant.types import (CompareResult, Dataset, EngineName, Evaluation, FloatModel, IOType, PrebuiltVariant,
                             QuantizedModel, Scheme, Variant, parse_enum)

__all__ = ["compare", "parse_schemes", "parse_engines"]


def parse_schemes(schemes: str | Sequence[Scheme | str]) -> list[Scheme]:
    if isinstance(schemes, str):
        schemes = list(Scheme) if schemes == "all" else [s.strip() for s in schemes.split(",") if s.strip()]
    out = [parse_enum(Scheme, s, "scheme") for s in schemes]
    if not out:
        raise InputError("--schemes: expected at least one scheme or 'all', found none")
    return out


def parse_engines(engines: str | Sequence[EngineName | str] | None) -> list[EngineName]:
    if engines is None or engines == "all":
        return list(ENGINES)
    if isinstance(engines, str):
        engines = [e.strip() for e in engines.split(",") if e.strip()]
    return [parse_enum(EngineName, e, "engine") for e in engines]


def _row(scheme: str, engine: str, io: str, path: Path | None, ev: Evaluation | None, base: Evaluation | None,
         q: QuantizedModel | None, warnings: list[str], error: str | None = None) -> Variant:
    size = ev.size.total_bytes if ev else None
    acc = ev.accuracy if ev else None
    lat = ev.latency if ev else None
    base_lat = base.latency if base else None
    return Variant(
        scheme=scheme, engine=engine, io=io, path=str(path) if path else None,
        size_bytes=size, weight_bytes=ev.size.weight_bytes if ev else None,
        size_ratio=size / base.size.total_bytes if ev and base else None,
        accuracy=acc,
        accuracy_delta=(acc - base.accuracy) if acc is not None and base and base.accuracy is not None else None,
        worst_output=ev.worst_output if ev else None, outputs=dict(ev.outputs) if ev and len(ev.outputs) > 1 else {},
        sqnr_db=ev.fidelity.sqnr_db if ev and ev.fidelity else None,
        cosine=ev.fidelity.cosine if ev and ev.fidelity else None,
        max_abs_error=ev.fidelity.max_abs_error if ev and ev.fidelity else None,
        latency_ms_median=lat.median_ms if lat else None, latency_ms_p90=lat.p90_ms if lat else None,
        speedup=base_lat.median_ms / lat.median_ms if lat and base_lat and lat.median_ms > 0 else None,
        quantize_seconds=q.seconds if q else None,
        warnings=tuple(warnings), notes=(q.notes if q else ev.notes if ev else ()), error=error)


def compare(model: FloatModel | str | Path, data: DataLike, calibration: DataLike | None = None,
            schemes: str | Sequence[Scheme | str] = "all", engines: str | Sequence[EngineName | str] | None = None,
            samples: int | None = None, out_dir: str | Path | None = None, threads: int = 1, runs: int = 50,
            warmup: int = 5, unsafe: bool = False, resize: tuple[int, int] | None = None,
            normalize: tuple[float, float] | None = None, observer: str | None = None,
            analyze: bool = False, progress: Progress = no_progress,
            prebuilt: Sequence[PrebuiltVariant] = (), provenance: Provenance | None = None, *,
            signature: str | None = None, output: str | None = None) -> CompareResult:
    """Float model plus every supported (scheme, engine) pair, evaluated side by side.

    ``prebuilt`` models (built by other means, e.g. the demo's QAT and pruned models) are
    measured in the same run and listed after the pairs.

    With ``analyze``, each built variant also goes through edgequant.analyze
    (no sensitivity runs; the latencies measured here are reused) and its top
    findings are attached to its row. ``provenance`` (how the run was made) goes into
    compare.json; by default it is collected here, without a command line.

    Fidelity is measured for every output; a row's SQNR, cosine and max error
    are its worst output's, named in ``worst_output``. Top-1 is read from
    ``output`` (default: the first). A variant that fails to build or to run
    is a row with its one-line error, and the others are still measured.
    """
    if provenance is None:
        provenance = collect({"model": model, "data": data, "calibration": calibration})
    scheme_list, engine_list = parse_schemes(schemes), parse_engines(engines)
    check_measurement_options(threads, runs)
    check_samples(samples)
    floats = resolve_model(model, unsafe, signature)
    label, label_notes = label_output(floats.signature, output)
    ds = load_checked_data(data, floats, resize, normalize)
    check_labels(ds.y, classes_of(floats.signature.output(label).shape), ds.source)
    global_warnings: list[str] = list(label_notes) if ds.has_labels else []
    if calibration is None:
        calib_ds = select_samples(ds, samples if samples is not None else DEFAULT_SAMPLES)
        if any(s.needs_calibration for s in scheme_list):
            global_warnings.append("no --calibration data: calibrated on the evaluation data, which flatters int8 accuracy")
    else:
        calib_ds = select_samples(load_checked_data(calibration, floats, resize, normalize),
                                  samples if samples is not None else DEFAULT_SAMPLES)
    out = Path(out_dir) if out_dir is not None else None

    skipped: list[dict[str, str]] = []
    pairs = []
    for scheme, eng in ((s, e) for s in scheme_list for e in engine_list):
        reason = _skip_reason(scheme, eng, floats)
        if reason is None:
            pairs.append((scheme, eng))
        else:
            skipped.append({"scheme": scheme.value, "engine": eng.value, "reason": reason})
    variants = _build_variants(pairs, floats, calib_ds, observer, progress)

    built = [v for v in variants if v[2] is not None]
    # The float model must run: every figure is relative to it. A variant that cannot becomes an error row.
    runners: list[Runner | None] = [Runner(floats.tflite, threads, "float")]
    errors: dict[int, str] = {}
    for k, (s, e, q, _) in enumerate(built, start=1):
        runners.append(_runner(q.tflite, threads, f"{s.value}/{e.value}", errors, k))
    for k, p in enumerate(prebuilt, start=1 + len(built)):
        runners.append(_runner(p.tflite, threads, f"{p.scheme}/{p.engine}", errors, k))
    reference = runners[0].predict(ds.inputs)
    live = [i for i, r in enumerate(runners) if r is not None]
    run_errors: dict[int, str] = {}
    measured = evaluate_runners([runners[i] for i in live], ds, reference, runs, warmup, progress, output=output,
                                errors=run_errors)
    if 0 in run_errors:
        raise InputError(f"the float model fails to run: {run_errors[0]}")
    evals: list[Evaluation | None] = [None] * len(runners)
    for pos, i in enumerate(live):
        evals[i] = measured[pos]
        if pos in run_errors:
            errors[i] = run_errors[pos]
    base = evals[0]
    assert base is not None
    paths: dict[tuple[str, str], Path] = {}
    if out is not None:
        paths[("float", "")] = atomic_write(out / "float.tflite", floats.tflite)
        for s, e, q, _ in built:
            assert q is not None
            paths[(s.value, e.value)] = atomic_write(out / f"{s.value}-{e.value}.tflite", q.tflite)
        for p in prebuilt:
            paths[(p.scheme, p.engine)] = atomic_write(out / f"{p.scheme}-{p.engine}.tflite", p.tflite)

    float_row = dataclasses.replace(_row("float", floats.kind.value, "float", paths.get(("float", "")), base, base,
                                         None, []), gzip_bytes=gzip_size(floats.tflite))
    rows: list[Variant] = []
    ev_by_pair = {(s, e): ev for (s, e, _, _), ev in zip(built, evals[1:])}
    err_by_pair = {(s, e): errors[k] for k, (s, e, _, _) in enumerate(built, start=1) if k in errors}
    for scheme, eng, q, err in variants:
        ev = ev_by_pair.get((scheme, eng))
        err = err or err_by_pair.get((scheme, eng))
        warnings: list[str] = []
        if ev is not None and q is not None:
            warnings += _slow_warning(ev, base, q)
        row = _row(scheme.value, eng.value, IOType.FLOAT.value, paths.get((scheme.value, eng.value)), ev, base, q,
                   warnings, err)
        if q is not None:
            row = dataclasses.replace(row, gzip_bytes=gzip_size(q.tflite))
        if analyze and ev is not None and q is not None:
            row = _with_findings(row, q, floats, ds, base, ev, runs, warmup, threads, progress, provenance)
        rows.append(row)
    for k, (p, ev) in enumerate(zip(prebuilt, evals[1 + len(built):]), start=1 + len(built)):
        row = _row(p.scheme, p.engine, IOType.FLOAT.value, paths.get((p.scheme, p.engine)), ev, base, None,
                   _slow_warning(ev, base, p) if ev is not None else [], errors.get(k))
        rows.append(dataclasses.replace(row, quantize_seconds=p.seconds, notes=p.notes,
                                        gzip_bytes=gzip_size(p.tflite)))
    result = CompareResult(model=str(floats.source), data=ds.source, samples=len(ds),
                           calibration_samples=len(calib_ds), threads=threads, latency_runs=runs,
                           float=float_row, variants=tuple(rows), skipped=tuple(skipped),
                           out_dir=str(out) if out else None, warnings=tuple(global_warnings),
                           provenance=provenance)
    if out is not None:
        write_compare_files(result, out)
    return result


# Findings attached per variant by --analyze; the full list is one `edgequant analyze` away.
ANALYZE_TOP_FINDINGS = 5


def _with_findings(row: Variant, q: QuantizedModel, floats: FloatModel, ds: Dataset, base: Evaluation,
                   ev: Evaluation, runs: int, warmup: int, threads: int, progress: Progress,
                   provenance: Provenance) -> Variant:
    """The row with edgequant.analyze's top findings; an analysis that fails becomes a warning, not a failure."""
    from edgequant.analyze import analyze as run_analysis

    latency = (base.latency, ev.latency) if base.latency is not None and ev.latency is not None else None
    try:
        found = run_analysis(q.tflite, floats, ds, top_k=0, runs=runs, warmup=warmup, threads=threads,
                             model_latency=latency, progress=progress, provenance=provenance).findings
    except EdgequantError as exc:
        return dataclasses.replace(row, warnings=row.warnings + (f"analysis failed: {exc}",))
    return dataclasses.replace(row, findings=tuple(found[:ANALYZE_TOP_FINDINGS]))


Built = tuple[Scheme, EngineName, QuantizedModel | None, str | None]


def _build_variants(pairs: Sequence[tuple[Scheme, EngineName]], floats: FloatModel, calib_ds: Dataset,
                    observer: str | None, progress: Progress) -> list[Built]:
    """Every pair quantized, in the order given: (scheme, engine, model or None, its one-line error or None).

    On a machine with two or more cores, the pairs of engines that calibrate
    themselves (TensorFlow's converter, which rebuilds from the Keras source in
    its own code) are built in a second process while this one builds the
    rest: the two sets share nothing but the inputs, and each alone keeps
    about one core busy. The models are the same bytes either way.
    """
    side = [p for p in pairs if ENGINES[p[1]].calibrates_itself]
    local = [p for p in pairs if p not in side]
    lane = _SideLane.start(floats, side, calib_ds) if side and local and (os.cpu_count() or 1) > 1 else None
    done: dict[tuple[Scheme, EngineName], Built] = {}
    try:
        with shared_stats():  # the variants calibrate the same float model on the same samples
            for pair in local if lane is not None else pairs:
                if lane is not None:
                    lane.collect(done)
                progress("compare variants", len(done), len(pairs))
                done[pair] = _build_one(*pair, floats, calib_ds, observer, progress)
        while lane is not None and lane.waiting:
            lane.collect(done, block=True)
            progress("compare variants", len(done), len(pairs))
    finally:
        if lane is not None:
            lane.stop()
    progress("compare variants", len(pairs), len(pairs))
    return [done[p] for p in pairs]


def _build_one(scheme: Scheme, eng: EngineName, floats: FloatModel, calib_ds: Dataset, observer: str | None,
               progress: Progress) -> Built:
    try:
        own = ENGINES[eng].calibrates_itself
        q = quantize(floats, scheme, eng, calibration=calib_ds, samples=None, io=IOType.FLOAT,
                     observer=observer if observer is not None and not own else None, progress=progress)
        return scheme, eng, q, None
    except EdgequantError as exc:
        return scheme, eng, None, str(exc)


class _SideLane:
    """Pairs built in a child process (forked from the workers' forkserver, not from this process, whose
    TensorFlow runs threads); each result comes back over a pipe as soon as it is built."""

    def __init__(self, proc: Any, conn: Any, pairs: list[tuple[Scheme, EngineName]]) -> None:
        self.proc, self.conn, self.waiting = proc, conn, list(pairs)

    @classmethod
    def start(cls, floats: FloatModel, pairs: list[tuple[Scheme, EngineName]], calib_ds: Dataset) -> _SideLane | None:
        """The lane running, or None when no process can be started (the caller then builds every pair)."""
        from edgequant._util import verbose
        from edgequant.runtime import isolated
        from edgequant.runtime.worker import pipe, start_process

        mine, theirs = pipe(duplex=False)
        try:
            proc = start_process(_side_lane, (theirs, floats, pairs, calib_ds, isolated(), verbose()),
                                 name="edgequant-side-lane")  # not daemonic: it starts LiteRT workers
        except (OSError, RuntimeError):
            mine.close()
            return None
        finally:
            theirs.close()
        return cls(proc, mine, pairs)

    def collect(self, done: dict[tuple[Scheme, EngineName], Built], block: bool = False) -> None:
        """Move the results that have arrived into ``done`` (with ``block``, wait for one first)."""
        from multiprocessing.connection import wait

        while self.waiting:
            # The process's sentinel as well as the pipe: a copy of the pipe's sending end kept elsewhere would
            # hide a dead process from recv.
            if not (self.conn.poll() or (block and self.conn in wait([self.conn, self.proc.sentinel]))):
                if block or (not self.proc.is_alive() and not self.conn.poll()):  # it may have sent, then ended
                    self._lost(done)
                return
            try:
                item: Built = self.conn.recv()
            except (EOFError, OSError):
                self._lost(done)
                return
            self.waiting.remove(item[:2])
            done[item[:2]] = item
            block = False

    def _lost(self, done: dict[tuple[Scheme, EngineName], Built]) -> None:
        from edgequant.runtime.worker import exit_reason

        self.proc.join(5)
        why = exit_reason(self.proc.exitcode)
        for scheme, eng in self.waiting:
            done[(scheme, eng)] = (scheme, eng, None, f"engine {eng.value} stopped in its process before "
                                   f"building this variant ({why}): expected a model")
        self.waiting = []

    def stop(self) -> None:
        self.conn.close()
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()


def _side_lane(conn: Any, floats: FloatModel, pairs: list[tuple[Scheme, EngineName]], calib_ds: Dataset,
               isolate: bool, verbose: bool) -> None:
    """The child's side of :class:`_SideLane`: build each pair, send each result; never a traceback."""
    import copyreg

    from edgequant._util import quiet, set_verbose
    from edgequant.runtime import isolation

    copyreg.pickle(types.MappingProxyType, lambda m: (_read_only, (dict(m),)))  # frozen records hold them
    set_verbose(verbose)
    try:
        with quiet(), isolation(isolate):
            for scheme, eng in pairs:
                try:
                    item = _build_one(scheme, eng, floats, calib_ds, None, no_progress)
                    conn.send(item)
                except Exception as exc:  # noqa: BLE001 - a bug here must come back as a row, not a traceback
                    conn.send((scheme, eng, None, f"engine {eng.value} failed: {type(exc).__name__}: {exc}"))
        conn.close()
    except BaseException:  # noqa: BLE001 - the parent reads a closed pipe as "stopped" and says so
        os._exit(1)


def _read_only(mapping: dict[Any, Any]) -> types.MappingProxyType[Any, Any]:
    return types.MappingProxyType(mapping)


def _runner(tflite: bytes, threads: int, what: str, errors: dict[int, str], position: int) -> Runner | None:
    """A runner for one variant, or None with its one-line reason in ``errors``."""
    try:
        return Runner(tflite, threads, what)
    except EdgequantError as exc:
        errors[position] = str(exc)
        return None


def _skip_reason(scheme: Scheme, engine: EngineName, floats: FloatModel) -> str | None:
    """Why a requested pair is not built (a fact about the pair, not a failure)."""
    if scheme not in ENGINES[engine].schemes:
        return f"engine {engine.value} does not support scheme {scheme.value}"
    if engine is EngineName.TFLITE_CONVERTER and not floats.kind.has_tensorflow_graph:
        return f"engine tflite-converter needs the Keras or SavedModel source, not a {floats.kind.value} model"
    return None


def _slow_warning(ev: Evaluation, base: Evaluation, q: QuantizedModel | PrebuiltVariant) -> list[str]:
    if not (ev.latency and base.latency) or base.latency.median_ms <= 0:
        return []
    ratio = ev.latency.median_ms / base.latency.median_ms
    if ratio < SLOW_TOLERANCE or not math.isfinite(ratio):
        return []
    reasons = slow_reasons(read_graph(q.tflite))
    return [f"slower than float: {ratio:.2f}x the float latency ({ev.latency.median_ms:.3f} ms vs "
            f"{base.latency.median_ms:.3f} ms, median of {ev.latency.runs} interleaved runs); " + reasons[0]]
