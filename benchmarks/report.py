"""Render a benchmark result as Markdown: the one-screen summary first, then every cell."""

from __future__ import annotations

from typing import Any

__all__ = ["summary_text", "ablation_text", "tuned_text", "paired_text", "markdown"]


def _num(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def summary_text(result: dict[str, Any]) -> str:
    """Per scheme: which method had the best accuracy delta and SQNR, on how many models."""
    lines = []
    for scheme, s in result["summary"].items():
        n = s["models"]
        acc = ", ".join(f"{m} {k}/{n}" for m, k in s["best_accuracy_delta"].items())
        sq = ", ".join(f"{m} {k}/{n}" for m, k in s["best_sqnr"].items())
        lines.append(f"{scheme:8s} best accuracy delta: {acc}  |  best SQNR: {sq}")
        if "fewest_changed" in s:
            few = ", ".join(f"{m} {k}/{n}" for m, k in s["fewest_changed"].items())
            lines.append(f"{'':8s} fewest top-1 changes vs float: {few}")
        paired = result.get("paired", {}).get("summary", {}).get(scheme)
        if paired and paired["models"]:
            alpha = result["paired"]["significance"]
            behind = ", ".join(paired["behind"]) or "none"
            ahead = ", ".join(paired["ahead"]) or "none"
            lines.append(f"{'':8s} edgequant vs each peer, image by image (exact McNemar p < {alpha:g}): behind a peer "
                         f"on {len(paired['behind'])}/{paired['models']} ({behind}), ahead of both on "
                         f"{len(paired['ahead'])}/{paired['models']} ({ahead})")
    return "\n".join(lines)


def paired_text(result: dict[str, Any]) -> list[str]:
    """Markdown lines: per model and scheme, the images each method changes and edgequant against each peer."""
    paired = result.get("paired")
    if not paired or not paired["pairs"]:
        return []
    cells = {(c["model"], c["scheme"], c["method"]): c for c in result["cells"] if c["status"] == "ok"}
    peers = list(dict.fromkeys(p["peer"] for p in paired["pairs"]))
    methods = [*peers, "edgequant"]
    n = result["models"][0]["test_samples"]
    out = ["", "## Image by image: edgequant's default against each peer", "",
           f"On {n} held-out images one image is {100 / n:.2f} points, so a difference of one or two images in the "
           "summary's accuracy delta can be chance. Here `changed` counts the images whose top-1 differs from the float "
           "model's (how much quantization moved the decisions, right or wrong). For each peer, `eq only` are "
           "the images edgequant gets right and the peer wrong, `peer only` the reverse; p is the exact McNemar "
           f"test on those images (below {paired['significance']:g}: a difference chance does not explain).", "",
           "| model | scheme | changed " + " / ".join(methods) + " | "
           + " | ".join(f"vs {p}: eq only / peer only / p" for p in peers) + " |",
           "|---|---|---:|" + "---:|" * len(peers)]
    keys = list(dict.fromkeys((p["model"], p["scheme"]) for p in paired["pairs"]))
    for model, scheme in keys:
        changed = " / ".join(_num(cells.get((model, scheme, m), {}).get("changed"), "d") for m in methods)
        vs = []
        for peer in peers:
            p = next((q for q in paired["pairs"] if (q["model"], q["scheme"], q["peer"]) == (model, scheme, peer)),
                     None)
            vs.append("-" if p is None else f"{p['a_only']} / {p['b_only']} / {p['p_value']:.2f}")
        out.append(f"| {model} | {scheme} | {changed} | " + " | ".join(vs) + " |")
    return out


def ablation_text(result: dict[str, Any]) -> str:
    """The same counts over every column, edgequant's single-observer and single-transform ones included."""
    lines = []
    for scheme, s in result["summary"].items():
        if "all_methods" not in s:
            continue
        a = s["all_methods"]
        lines.append(f"{scheme}: best accuracy delta " + ", ".join(f"{m} {k}" for m, k in a["best_accuracy_delta"].items()))
        lines.append(f"{' ' * len(scheme)}  best SQNR           " + ", ".join(f"{m} {k}" for m, k in a["best_sqnr"].items()))
    return "\n".join(lines)


def _pick(c: dict[str, Any] | None) -> str:
    if c is None:
        return "none within budget"
    return (f"{c['scheme']}: {c['size_ratio']:.3f} / {_num(c['latency_ratio'], '.2f')}x / "
            f"{c['accuracy_delta'] * 100:+.2f}")


def tuned_text(result: dict[str, Any]) -> list[str]:
    """Markdown lines: the tuned row against each peer's smallest and fastest fixed scheme within the budget."""
    tuned = result.get("tuned")
    if not tuned or not tuned["models"]:
        return []
    peers = list(tuned["models"][0]["peers"])
    budget = tuned["budget_pt"]
    out = ["", f"## Tuned: edgequant tune at a {budget:g}-point budget against each peer's best fixed scheme", "",
           f"`tuned` = `edgequant tune --max-drop {budget:g}` (top-1 on the held-out split, objective balanced; its "
           "recipe in the note). For each peer, the smallest and the fastest of its fixed schemes whose top-1 drop "
           f"is at most {budget:g} points on the same split. Cells read size ratio / latency ratio / delta in "
           "points, from the shared evaluation above (lower ratios are better).", "",
           "| model | tuned | " + " | ".join(f"{p} smallest | {p} fastest" for p in peers) + " |",
           "|---|---|" + "---|" * (2 * len(peers))]
    for row in tuned["models"]:
        t = row["tuned"]
        cells = [f"{t['size_ratio']:.3f} / {_num(t['latency_ratio'], '.2f')}x / {t['accuracy_delta'] * 100:+.2f}"]
        for p in peers:
            cells += [_pick(row["peers"][p]["smallest"]), _pick(row["peers"][p]["fastest"])]
        out.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    out += ["", "Recipes chosen by `tuned`:", ""]
    out += [f"- {row['model']}: {row['tuned']['reason']}" for row in tuned["models"]]
    return out


def markdown(result: dict[str, Any], command: str) -> str:
    meta = result["meta"]
    v = meta["versions"]
    out = [
        "# edgequant benchmark",
        "",
        f"Run {meta['date']} on {meta['machine']}, Python {meta['python']}; tensorflow-cpu {v['tensorflow-cpu']}, "
        f"ai-edge-litert {v['ai-edge-litert']}, litert-quantizer {v['litert-quantizer']}, keras {v['keras']}. "
        f"Took {meta['seconds']} s." + (f" Code: commit {meta['commit']}." if meta.get("commit") else ""),
        "",
        f"Reproduce: `{command}`",
        "",
        "Every model is quantized by each method and evaluated in LiteRT in one process, on the same held-out "
        f"data and the same {meta['calibration_samples']} calibration samples. Latency ratio = method's median / "
        f"float median over {meta['latency_runs']} interleaved batch-1 runs, {meta['threads']} thread (lower is "
        "faster; ratios are comparable within a model, absolute times drift on a shared machine). Quantize time "
        "is wall time from the .keras file to the quantized .tflite (TensorFlow conversion included for every "
        "method). SQNR is of the model's outputs against the float .tflite's.",
        "",
        "Methods: `tf-converter` = TFLiteConverter post-training quantization as the seeds call it (float model "
        "I/O); `litert-quantizer` = LiteRT Quantizer with its default recipe (integer model I/O for static "
        "schemes); `edgequant` = `edgequant.quantize` with its default engine for the scheme; `qat` (int8, "
        "w4a8) = `edgequant.qat`, 3 epochs of quantization-aware fine-tuning on the training split (labels), "
        "exported through the litert engine, so it is a training method, not post-training quantization.",
        "",
        "## Summary",
        "",
        "```",
        summary_text(result),
        "```",
        "",
        "Ablations (every column; in edgequant's litert engine, `eq-<observer>` fixes one observer with no "
        "transform, `eq-<transform>` one transform (`eq-no-transform`: none) with the default observer choice; "
        "counts out of the models that have the scheme):",
        "",
        "```",
        ablation_text(result),
        "```",
        *paired_text(result),
        *tuned_text(result),
        "",
        "## Float models",
        "",
        "| model | description | float size | top-1 | latency ms | test samples |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for m in result["models"]:
        out.append(f"| {m['name']} | {m['description']} | {m['size_bytes']:,} | {m['accuracy'] * 100:.2f}% | "
                   f"{_num(m['latency_ms'], '.3f')} | {m['test_samples']} |")
    if result.get("calibration_memory"):
        out += ["", "## Calibration memory", "",
                "edgequant's statistics pass on 1,000 samples, each in a fresh process without TensorFlow: peak "
                "resident memory, and the same process's peak without the pass (imports, model and data loaded).",
                "", "| model | tensors | samples | peak RSS MB | baseline MB | seconds |", "|---|---:|---:|---:|---:|---:|"]
        for r in result["calibration_memory"]:
            out.append(f"| {r['model']} | {r['tensors']} | {r['samples']} | {r['peak_rss_mb']} | "
                       f"{r['baseline_rss_mb']} | {r['seconds']} |")
    out += ["", "## Every cell", "",
            "| model | scheme | method | top-1 | Δ pt | changed | SQNR dB | size ratio | latency ratio | quantize s "
            "| note |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for c in result["cells"]:
        if c["status"] != "ok":
            out.append(f"| {c['model']} | {c['scheme']} | {c['method']} | {c['status']} | | | | | | | "
                       f"{c['reason'].replace('|', '/')} |")
            continue
        note = (c.get("reason") or "").replace("|", "/")
        out.append(f"| {c['model']} | {c['scheme']} | {c['method']} | {c['accuracy'] * 100:.2f}% | "
                   f"{c['accuracy_delta'] * 100:+.2f} | {_num(c.get('changed'), 'd')} | {_num(c['sqnr_db'], '.1f')} | "
                   f"{c['size_ratio']:.3f} | "
                   f"{_num(c['latency_ratio'], '.2f')} | {c['quantize_seconds']:.2f} | {note} |")
    return "\n".join(out) + "\n"
