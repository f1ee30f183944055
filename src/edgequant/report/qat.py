"""The terminal text of ``qat`` and ``prune`` results and of their per-epoch progress lines."""

from __future__ import annotations

import math

from edgequant.qat.records import EpochLog, PruneResult, QATResult

__all__ = ["epoch_line", "qat_text", "prune_text"]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


def epoch_line(log: EpochLog, what: str = "") -> str:
    """One line per epoch: "epoch 2/3: loss 0.0635, train top-1 98.44%, val top-1 98.22%, 1.5 s"."""
    parts = [f"epoch {log.epoch}/{log.epochs}: loss {log.loss:.4f}"]
    if log.train_accuracy is not None:
        parts.append(f"train top-1 {_pct(log.train_accuracy)}")
    if log.val_accuracy is not None:
        parts.append(f"val top-1 {_pct(log.val_accuracy)}" + (f" ({what})" if what else ""))
    if log.sparsity is not None:
        parts.append(f"sparsity {log.sparsity * 100:.1f}%")
    parts.append(f"{log.seconds:.1f} s")
    return ", ".join(parts)


def _listing(title: str, items: tuple[str, ...], show: int = 8) -> list[str]:
    if not items:
        return []
    more = f" (+{len(items) - show} more)" if len(items) > show else ""
    return [f"{title} ({len(items)}):"] + [f"  {i}" for i in items[:show]] + ([f"  ...{more}"] if more else [])


def qat_text(r: QATResult) -> str:
    where = f" -> {r.path}" if r.path else ""
    sqnr = "inf" if math.isinf(r.simulation_sqnr_db) else f"{r.simulation_sqnr_db:.1f}"
    lines = [f"qat {r.scheme.value}: {len(r.tflite):,} bytes in {r.seconds:.1f} s{where}",
             f"check on {r.check_data} ({r.check_samples} samples): float model {_pct(r.float_accuracy)}, "
             f"fake-quantized Keras {_pct(r.fake_quant_accuracy)}, exported in LiteRT {_pct(r.litert_accuracy)}; "
             f"same top-1 on {r.agreement * 100:.2f}% of samples, output SQNR {sqnr} dB (LiteRT vs the simulation)"]
    lines += _listing("batch norm folded", r.folded, 4)
    lines += _listing("layers kept float (not simulated; their ops stay float in the .tflite)", r.float_layers)
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)


def prune_text(r: PruneResult) -> str:
    from edgequant.report import _table

    where = f" -> {r.path}" if r.path else ""
    lines = [f"pruned to {r.sparsity * 100:.1f}% sparsity (target {r.target_sparsity * 100:.1f}% per layer, "
             f"{r.schedule.value} schedule, {len(r.epochs)} epochs) in {r.seconds:.1f} s{where}", ""]
    lines.append(_table(["layer", "weights", "zeros", "sparsity"],
                        [[lay.layer, f"{lay.weights:,}", f"{lay.zeros:,}", f"{lay.sparsity * 100:.1f}%"]
                         for lay in r.layers]))
    s = r.size
    lines += ["", _table(["file", "bytes", "gzip bytes"],
                         [["float .tflite before", f"{s.float_tflite_bytes:,}", f"{s.float_tflite_gzip_bytes:,}"],
                          ["float .tflite after", f"{s.pruned_tflite_bytes:,}", f"{s.pruned_tflite_gzip_bytes:,}"],
                          ["pruned .keras", f"{s.keras_bytes:,}", f"{s.keras_gzip_bytes:,}"]]),
              f"gzip: the pruned float .tflite is {s.gzip_ratio:.2f}x smaller than before (raw size unchanged: "
              "pruning zeros weights, it does not remove them)"]
    if r.float_accuracy is not None and r.pruned_accuracy is not None:
        lines.append(f"top-1 in LiteRT on {r.check_data}: before {_pct(r.float_accuracy)}, after "
                     f"{_pct(r.pruned_accuracy)} ({(r.pruned_accuracy - r.float_accuracy) * 100:+.2f} pt)")
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)
