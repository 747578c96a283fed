"""Benchmark and evaluation reports (bench.md, report.html, eval.md) rendered from the runs' records."""

from __future__ import annotations

import logging

from .manifest import ManifestEntry
from .tables import _fmt, table

log = logging.getLogger("vggdeploy")


# ---------------------------------------------------------------- benchmark reports

RESULT_COLUMNS = [("model", "model"), ("form", "form"), ("precision", "precision"), ("runtime", "runtime"),
                  ("config", "runtime settings"), ("size", "size"), ("batch", "batch"),
                  ("concurrency", "in flight"), ("timing", "timing"), ("median_ms", "p50 ms"), ("p90_ms", "p90 ms"),
                  ("p99_ms", "p99 ms"), ("std_ms", "std ms"), ("noise", "std/p50"), ("images_per_s", "img/s"), ("speedup_vs_eager", "vs eager"),
                  ("speedup_vs_best_peer", "vs best peer"),
                  ("vs_floor", "x floor"), ("start_s", "load s"), ("first_ms", "first ms"), ("peak_rss_mb", "peak RSS MB"),
                  ("artifact_mb", "size MB"), ("cpu_isa", "CPU INT8")]


NOISY = 0.25  # std over p50 above which a row's timing is flagged: rerun it on a quiet machine


def bench_table(run: dict) -> str:
    """A run's rows as the table `vggdeploy bench` prints (a folder column when two rows would read alike)."""
    keep = [(k, h) for k, h in RESULT_COLUMNS if k not in ("model", "p90_ms", "std_ms", "artifact_mb")]
    rows = run["results"]
    if several_folders(rows):  # two `classifier fp32` rows must say whose they are
        keep.insert(0, ("folder", "model"))
        rows = [{**r, "folder": folder_of(r)} for r in rows]
    return table([h for _, h in keep], [result_row(r, keep) for r in rows])


def _noise(r: dict) -> str | None:
    """std/p50 of a row's latencies, flagged when it is over NOISY."""
    if not r.get("median_ms") or r.get("std_ms") is None:
        return None
    ratio = r["std_ms"] / r["median_ms"]
    return f"NOISY {ratio:.2f}" if ratio > NOISY else f"{ratio:.2f}"


def _settings(r: dict) -> str | None:
    """A row's runtime settings in a few words (threads, streams, ...), as the runtime reported them;
    its name already says the device, hint and precision."""
    config = r.get("config")
    if not config:
        return None
    shown = {k: v for k, v in config.items() if k not in ("device", "provider", "hint", "precision")}
    return ", ".join(f"{k} {v}" for k, v in shown.items())


def result_row(r: dict, columns: list[tuple[str, str]] = RESULT_COLUMNS) -> list:
    """One benchmark row's cells for `columns` (computed ones included: std/p50, runtime settings)."""
    cells = {"noise": _noise, "config": _settings}
    return [cells[k](r) if k in cells else r.get(k) for k, _ in columns]


def _rows(run: dict) -> list[list]:
    return [result_row(r) for r in run["results"]]


def _system_line(run: dict) -> str:
    s = run["system"]
    gpus = ", ".join(g["name"] for g in s.get("gpus", [])) or "no GPU"
    return (f"{s['cpu']}, {s['cores']} cores ({', '.join(s['isa']) or 'no AVX2'}); {gpus}; "
            + ", ".join(f"{k} {v}" for k, v in s["versions"].items()))


def render_markdown(runs: list[dict], entries: dict[str, ManifestEntry] | None = None) -> str:
    """bench.md: each run's table, skips and (from `entries`, runs.manifest_entries) its worst layers."""
    out = ["# vggdeploy benchmark", ""]
    for i, run in enumerate(runs, 1):
        out += [f"## Run {i}: {run['created']}{' (interrupted)' if run.get('interrupted') else ''}", "",
                f"- machine: {_system_line(run)}", f"- command: `{run['command']}`",
                "- compute floor: best GEMM rates measured in this run, GMAC/s: "
                + ", ".join(f"{k} {v}" for k, v in run["gemm_gmacs"].items() if "/" not in k), ""]
        out += [table([h for _, h in RESULT_COLUMNS], _rows(run), markdown=True), ""]
        out += [f"- skipped {s['artifact']} on {s['backend']}: {s['reason']}" for s in run.get("skipped", [])]
        layers = layer_error_rows(_entries_of(run["results"], entries or {}))
        if layers:
            out += ["", "Layers adding the most error against FP32 (relative L2 each adds; from the manifests):", "",
                    table(LAYER_COLUMNS, layers, markdown=True), ""]
        profiled = layer_time_rows(run["results"])
        if profiled:
            out += ["", "Time per layer type (`--profile-layers`: the runtime's own profiler, median of the runs):", "",
                    table(LAYER_TIME_COLUMNS, profiled, markdown=True), ""]
    out += ["", "p50/p90/p99: latency per batch; `vs eager`: eager PyTorch's p50 over this row's (same model, form, "
            "size, batch); `runtime settings`: threads (ONNX Runtime's auto: one per physical core), streams and requests as the runtime reported them; `std/p50`: NOISY above 0.25 (rerun on a quiet machine); `x floor`: p50 over the compute floor (the model's MACs at that size and batch over the "
            "best GEMM rate of its precision measured in the same run); `load s` + `first ms`: cold start; "
            "peak RSS of the process that ran that runtime alone."]
    return "\n".join(out) + "\n"


LAYER_TIME_COLUMNS = ["model", "form", "precision", "runtime", "batch", "profiled ms", "layer types: ms (share)"]


def layer_time_rows(results: list[dict], top: int = 5) -> list[list]:
    """One row per profiled result: its summed layer time and its `top` layer types."""
    rows = []
    for r in results:
        if r.get("layers"):
            total = sum(r["layers"].values()) or 1.0
            shown = ", ".join(f"{t} {ms:.3g} ({ms / total:.0%})" for t, ms in list(r["layers"].items())[:top])
            rows.append([folder_of(r), r["form"], r["precision"], _profiled_by(r), r["batch"], round(total, 3), shown])
    return rows


def _profiled_by(r: dict) -> str:
    """The runner the profile ran on (OpenVINO's is at its latency hint, whatever the timed row's)."""
    return r.get("layers_runtime", r["runtime"])


def _layer_time_plot(results: list[dict]) -> tuple[str, str] | None:
    """Stacked bars: each profiled row's time by layer type (the six largest types overall, the rest as other)."""
    import matplotlib.pyplot as plt

    profiled = [r for r in results if r.get("layers")]
    if not profiled:
        return None
    overall: dict[str, float] = {}
    for r in profiled:
        for t, ms in r["layers"].items():
            overall[t] = overall.get(t, 0.0) + ms
    kinds = sorted(overall, key=lambda t: -overall[t])[:6]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(profiled) + 1.5))
    labels = [f"{folder_of(r)} {r['form']} {r['precision']} · {_profiled_by(r)} · b{r['batch']}" for r in profiled]
    left = [0.0] * len(profiled)
    for kind in kinds + ["other"]:
        widths = [r["layers"].get(kind, 0.0) if kind != "other" else sum(ms for t, ms in r["layers"].items() if t not in kinds)
                  for r in profiled]
        ax.barh(labels, widths, left=left, label=kind)
        left = [a + b for a, b in zip(left, widths)]
    ax.set(xlabel="ms per batch (profiled run)", title="Time per layer type")
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    out = ("Time per layer type (--profile-layers)", _png(fig))
    plt.close(fig)
    return out


def _png(fig) -> str:
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plots(results: list[dict]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = []
    series: dict[tuple, list] = {}
    for r in results:
        if r["timing"] not in ("wall-clock", "cuda-events,device-io"):
            continue
        series.setdefault((r["model"], r["form"], r["precision"], r["backend"], r["size"]), []).append(r)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    _distinct_styles(ax, len(series))
    batches = sorted({r["batch"] for rows in series.values() for r in rows})
    for (model, form, precision, backend, size), rows in sorted(series.items()):
        rows = sorted(rows, key=lambda r: r["batch"])
        if len(rows) > 1 or len(batches) == 1:
            peer = {"ls": "--", "marker": "x", "lw": 2.2} if rows[0].get("peer") else {}  # peers: dashed, crosses
            line, = ax.plot([r["batch"] for r in rows], [r["median_ms"] for r in rows], **peer,
                            label=f"{'peer: ' if peer else ''}{model} {form} {precision} · {_series_runtime(rows)} · {size}")
            # each series' own floor (its model, form and size), in its colour: never another series' floor
            if all(r["floor_ms"] for r in rows):  # an ONNX without vggdeploy metadata has none
                ax.plot([r["batch"] for r in rows], [r["floor_ms"] for r in rows], ":", color=line.get_color(), marker="")
    ax.plot([], [], ":", color="gray", label="dotted: each series' compute floor")
    ax.set(xlabel="batch", ylabel="p50 latency per batch (ms)", xscale="log", yscale="log",
           title="Latency vs batch")
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.minorticks_off()
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the plot, never over the lines
    plots.append(("Latency vs batch, per runtime and precision", _png(fig)))
    plt.close(fig)

    speed = [r for r in results if r.get("speedup_vs_eager") and not r["backend"].startswith("eager")]
    if speed:
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(speed) + 1.2))
        noisy = [_noisy_ratio(r, results) for r in speed]
        labels = [f"{r['model']} {r['form']} {r['precision']} · {_runtime(r)} · {r['size']} · b{r['batch']}"
                  + (f" · {r['concurrency']} in flight" if r["timing"].startswith("serving") else "")
                  + (" · NOISY" if n else "") for r, n in zip(speed, noisy)]
        bars = ax.barh(labels, [r["speedup_vs_eager"] for r in speed], color="tab:green")
        for bar, n in zip(bars, noisy):  # a ratio on a noisy row (its own or eager's): hatched and grey
            if n:
                bar.set(color="#bbbbbb", hatch="//", edgecolor="#666666")
        ax.axvline(1.0, color="k", lw=1)
        title = "Speed-up over eager PyTorch, same weights, same run"
        ax.set(xlabel="speed-up over eager PyTorch (x)" + ("; grey, hatched: NOISY (std/p50 above "
                                                            f"{NOISY}, its own or eager's): rerun on a quiet machine" if any(noisy) else ""),
               title=title)
        ax.tick_params(axis="y", labelsize=7)
        plots.append(("Speed-up over eager PyTorch", _png(fig)))
        plt.close(fig)

    ours = [r for r in results if r.get("speedup_vs_best_peer") and not r.get("peer") and not r["backend"].startswith("eager")]
    if ours:
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(ours) + 1.2))
        ax.barh([f"{r['model']} {r['form']} {r['precision']} · {_runtime(r)} · {r['size']} · b{r['batch']}" for r in ours],
                [r["speedup_vs_best_peer"] for r in ours], color="tab:blue")
        ax.axvline(1.0, color="k", lw=1)
        ax.set(xlabel="speed-up over the fastest peer (x; above 1: ahead)",
               title="Against what a PyTorch user would pick instead (torch.compile, PT2E), same run")
        ax.tick_params(axis="y", labelsize=7)
        plots.append(("Speed-up over the fastest peer", _png(fig)))
        plt.close(fig)

    serving = [r for r in results if r["timing"].startswith("serving")]
    if serving:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        by_run: dict[tuple, list] = {}
        for r in serving:
            by_run.setdefault((r["model"], r["form"], r["precision"], r["backend"], r["size"], r["batch"]), []).append(r)
        _distinct_styles(ax, len(by_run))
        for (model, form, precision, backend, size, batch), rows in sorted(by_run.items()):
            rows = sorted(rows, key=lambda r: r["concurrency"])
            ax.plot([r["concurrency"] for r in rows], [r["images_per_s"] for r in rows],
                    label=f"{model} {form} {precision} · {_runtime(rows[0])} · {size} · b{batch}")
        ax.set(xlabel="requests in flight", ylabel="images/s", xscale="log", title="Throughput under a server's load")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        plots.append(("Throughput vs requests in flight", _png(fig)))
        plt.close(fig)

    by: dict[tuple, list] = {}
    for r in results:
        if r["form"] != "classifier" and r["timing"] == "wall-clock":
            by.setdefault((r["model"], r["form"], r["precision"], r["backend"], r["batch"]), []).append(r)
    by = {k: rows for k, rows in by.items() if len({r["size"] for r in rows}) > 1}  # a line needs two sizes
    if by:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        _distinct_styles(ax, len(by))
        for (model, form, precision, backend, batch), rows in sorted(by.items()):
            rows = sorted(rows, key=lambda r: _pixels(r["size"]))
            ax.plot([_pixels(r["size"]) / 1e3 for r in rows], [r["median_ms"] for r in rows],
                    label=f"{model} {form} {precision} · {_runtime(rows[0])} · b{batch}")
            if all(r["floor_ms"] for r in rows):
                ax.plot([_pixels(r["size"]) / 1e3 for r in rows], [r["floor_ms"] for r in rows], ":", color="gray")
        ax.set(xlabel="input pixels (thousands)", ylabel="p50 latency (ms)", title="Latency vs input size (dotted: floor)")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        plots.append(("Latency vs input size (dense and features forms)", _png(fig)))
        plt.close(fig)
    return plots


def _noisy_ratio(r: dict, results: list[dict]) -> bool:
    """Whether a speed-up rests on a NOISY row: the row itself, or the eager row it is divided by."""
    def noisy(x):
        return bool(x.get("median_ms")) and x.get("std_ms") is not None and x["std_ms"] / x["median_ms"] > NOISY

    same = (r["model"], r["form"], r["size"], r["batch"], r["timing"])
    return noisy(r) or any(noisy(e) for e in results if e["backend"].startswith("eager")
                           and (e["model"], e["form"], e["size"], e["batch"], e["timing"]) == same)


def _runtime(row: dict) -> str:
    """The runtime that ran a row (e.g. openvino[CPU,latency,f32]), not the backend asked for (cpu)."""
    return row.get("runtime") or row["backend"]


def _series_runtime(rows: list[dict]) -> str:
    """One series' runtime; where its rows ran with different settings (OpenVINO's latency hint at
    batch 1, throughput above) the settings that differ are named per batch."""
    names = [_runtime(r) for r in rows]
    if len(set(names)) == 1 or not all("[" in n for n in names):
        return names[0]
    parts = [n[n.index("[") + 1:-1].split(",") for n in names]
    common = [p for p in parts[0] if all(p in q for q in parts)]
    differing = ", ".join(f"{'/'.join(p for p in q if p not in common)} b{r['batch']}" for q, r in zip(parts, rows))
    return f"{names[0][:names[0].index('[')]}[{','.join(common)}] ({differing})"


def _distinct_styles(ax, n: int) -> None:
    """Colours, markers, line styles and hollow or filled markers that cycle at different lengths,
    so that two series on the same points (ONNX Runtime and OpenVINO FP32 often are) both show."""
    from itertools import cycle, islice

    import matplotlib
    from cycler import cycler

    colors = matplotlib.colormaps["tab20"].colors if n > 10 else matplotlib.colormaps["tab10"].colors
    count = n or 1

    def take(values):
        return list(islice(cycle(values), count))

    ax.set_prop_cycle(cycler(color=take(colors), marker=take("osD^v<>"), linestyle=take(["-", "--", "-."]),
                             markersize=take([7, 5]), markerfacecolor=[c if i % 2 else "none" for i, c in
                                                                        enumerate(take(colors))]))


def _pixels(size: str) -> int:
    h, w = size.split("x")
    return int(h) * int(w)


def _html_table(headers: list[str], rows: list[list]) -> str:
    from html import escape

    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    # wide tables scroll inside their own box instead of running off the page
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _entries_of(results: list[dict], entries: dict[str, ManifestEntry]) -> list[tuple[str, ManifestEntry]]:
    """(file name, manifest entry) of each artifact timed in `results` that `entries` holds, in order."""
    from pathlib import Path

    return [(Path(a).name, entries[a]) for a in dict.fromkeys(r["artifact"] for r in results) if a in entries]


def parity_of(entries: list[tuple[str, ManifestEntry]]) -> list[list]:
    """Parity/accuracy figures the artifacts' manifest entries hold, one row per artifact."""
    return [[name, p.get("backend"), p.get("reference"), p.get("rel_l2"), p.get("cosine"), p.get("top1_agreement")]
            for name, p in ((n, e.get("parity")) for n, e in entries) if p]


LAYER_COLUMNS = ["artifact", "rank", "layer", "op", "adds rel L2", "output rel L2", "cosine"]


def layer_error_rows(entries: list[tuple[str, ManifestEntry]], top: int = 5) -> list[list]:
    """The `top` layers adding the most error against FP32, per FP16/INT8 artifact (layer_error.py)."""
    return [[name, i, e["node"], e["op"], e["added"], e["rel_l2"], e["cosine"]]
            for name, entry in entries for i, e in enumerate((entry.get("layer_errors") or [])[:top], 1)]


def _layer_plot(entries: list[tuple[str, ManifestEntry]]) -> tuple[str, str] | None:
    """Each artifact's per-layer error added against FP32, in graph order, one panel per artifact."""
    import matplotlib.pyplot as plt

    measured = [(n, e["layer_errors"]) for n, e in entries if e.get("layer_errors")][:6]
    if not measured:
        return None
    fig, axes = plt.subplots(len(measured), 1, figsize=(8, 1.9 * len(measured)), squeeze=False)
    for ax, (name, errors) in zip(axes[:, 0], measured):
        order = sorted(errors, key=lambda e: e.get("index", 0))
        ax.bar(range(len(order)), [max(e["added"], 0) for e in order], color="#c0504d")
        ax.set_xticks(range(len(order)), [e["node"].removeprefix("node_") for e in order], rotation=30, fontsize=7, ha="right")
        ax.set_ylabel("adds rel L2", fontsize=8)
        ax.set_title(name, fontsize=9, loc="left")
    fig.tight_layout()
    return "Per-layer error against FP32 (what each layer adds; from the manifests)", _png(fig)


EVAL_COLUMNS = [("artifact", "artifact"), ("precision", "precision"), ("runtime", "runtime"), ("protocol", "protocol"),
                ("scales", "scales"), ("flip", "flip"), ("images", "images"), ("top1_err", "top-1 err %"),
                ("top5_err", "top-5 err %"), ("images_per_s", "img/s"), ("runtime_images_per_s", "runtime img/s"),
                ("skipped", "skipped")]


def folder_of(r: dict) -> str:
    """The artifact folder a bench or eval row comes from (older runs' eager rows: the model's name)."""
    from pathlib import Path

    if r.get("folder"):
        return r["folder"]
    return Path(r["artifact"]).parent.name if str(r["artifact"]).endswith((".onnx", ".plan", ".xml")) else r.get("model", "")


def several_folders(rows: list[dict]) -> bool:
    """Whether the rows come from more than one artifact folder (then tables say which); a fusion row
    (artifacts joined by " + ") counts for none."""
    return len({folder_of(r) for r in rows if " + " not in str(r["artifact"])}) > 1


def eval_columns(evals: list[dict]) -> list[tuple[str, str]]:
    """EVAL_COLUMNS, led by the model's folder where the rows come from several."""
    return ([("folder", "model")] if several_folders(evals) else []) + EVAL_COLUMNS


def eval_rows(evals: list[dict], columns: list[tuple[str, str]] = EVAL_COLUMNS) -> list[list]:
    """`vggdeploy eval` rows as table cells (`columns`: EVAL_COLUMNS or eval_columns')."""
    from pathlib import Path

    def cell(r, k):
        if k == "artifact":
            return Path(r[k]).name
        if k == "folder":
            return "fusion" if " + " in r["artifact"] else folder_of(r)
        if k == "scales":
            return ",".join(map(str, r[k])) or "-"
        return len(r[k]) if k == "skipped" else r.get(k)

    return [[cell(r, k) for k, _ in columns] for r in evals]


def render_html(runs: list[dict], evals: list[dict] | None = None, entries: dict[str, ManifestEntry] | None = None) -> str:
    """One self-contained page (plots embedded as PNG data, no network); `evals`: rows of
    `vggdeploy eval` to show beside the speed; `entries`: the timed artifacts' manifest entries
    (runs.manifest_entries), for their parity and per-layer error."""
    from html import escape

    results = [r for run in runs for r in run["results"]]
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>vggdeploy benchmark</title><style>",
             "body{font-family:system-ui,sans-serif;margin:24px;max-width:1250px;color:#222}",
             "table{border-collapse:collapse;font-size:12px;margin:8px 0 20px}",
             "th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f0f0f0}",
             ".scroll{overflow-x:auto;max-width:100%}",
             "td:nth-child(-n+5){text-align:left}img{max-width:100%;border:1px solid #eee;margin:6px 0}",
             ".note{color:#555;font-size:13px}</style></head><body><h1>vggdeploy benchmark</h1>"]
    for i, run in enumerate(runs, 1):
        parts.append(f"<p class='note'><b>Run {i}</b> {escape(run['created'])}"
                     f"{' (interrupted)' if run.get('interrupted') else ''}: {escape(_system_line(run))}<br>"
                     f"<code>{escape(run['command'])}</code></p>")
    if not results:  # an interrupted or all-skipped run: its header and notes, no plots
        parts.append("<p class='note'>This run holds no results.</p>")
    try:
        plots = _plots(results) if results else []
    except ImportError:  # `vggdeploy[cpu]` alone: the page, without plots, says how to get them
        plots = []
        parts.append("<p class='note'>No plots: they need matplotlib (<code>pip install 'vggdeploy[report]'</code>)."
                     " The tables below hold every figure.</p>")
    entries = _entries_of(results, entries or {})
    if plots:
        plots += [p for p in (_layer_plot(entries), _layer_time_plot(results)) if p]
    for title, src in plots:
        parts.append(f"<h2>{escape(title)}</h2><img alt='{escape(title)}' src='{src}'>")
    parts.append("<h2>Results</h2>")
    parts.append(_html_table([h for _, h in RESULT_COLUMNS], [result_row(r) for r in results]))
    if evals:
        parts.append("<h2>Accuracy under the paper's protocols (vggdeploy eval)</h2>")
        columns = eval_columns(evals)
        parts.append(_html_table([h for _, h in columns], eval_rows(evals, columns)))
    parity = parity_of(entries)
    if parity:
        parts.append("<h2>Accuracy parity (from the artifact manifests)</h2>")
        parts.append(_html_table(["artifact", "runtime", "reference", "rel L2", "cosine", "top-1 agreement"], parity))
    layers = layer_error_rows(entries)
    if layers:
        parts.append("<h2>Layers adding the most error against FP32 (from the artifact manifests)</h2>")
        parts.append(_html_table(LAYER_COLUMNS, layers))
    profiled = layer_time_rows(results)
    if profiled:
        parts.append("<h2>Time per layer type (the runtime's own profiler)</h2>")
        parts.append(_html_table(LAYER_TIME_COLUMNS, profiled))
    parts.append("<p class='note'>vs eager: eager PyTorch's p50 over the row's, same weights, form, size and batch, "
                 "same run. x floor: p50 over the model's MACs divided by the best GEMM rate of its precision measured "
                 "in the same run. Each runtime ran in a process of its own.</p></body></html>")
    return "\n".join(parts)
