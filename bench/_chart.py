"""The chart of ``invocation_cost.py --chart``: CPU µs per invocation per scenario, one bar per checkout
(before, after, ...), the spread of the rounds as error bars, awslambdaric + Mangum as reference lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCENARIOS = [
    ("run-buffered", "run\nbuffered"),
    ("run-stream-1", "run\nstream 1x100 B"),
    ("run-stream-4", "run\nstream 4x200 B\nSSE"),
    ("run-stream-1-nopad", "stream 1\npadding none"),
    ("run-stream-4-nopad", "stream 4\npadding none"),
    ("run-stream-1-nopad-warn", "stream 1\nnone + WARNING"),
    ("run-stream-4-nopad-warn", "stream 4\nnone + WARNING"),
    ("ric-adapter", "awslambdaric\n+ Adapter"),
]
COLOURS = ["#9e9e9e", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"]


Series = tuple[str, dict[str, Any], float]


def _series(files: list[str]) -> tuple[list[Series], list[tuple[str, float, float, float]]]:
    """(series name, {scenario: result}, its run's ric-mangum) per checkout label, and (file, ric-mangum,
    uvicorn, python-floor) per file (nan where a run did not measure it)."""
    series: list[Series] = []
    references = []
    runs = [(Path(f).stem, json.loads(Path(f).read_text())) for f in files]
    labels = [label for _, run in runs for label in run["ours"]]
    for stem, run in runs:
        warm = run.get("warm", {})
        ref = warm.get("ric-mangum", {}).get("median_us", float("nan"))
        for label in run["ours"]:
            name = label if labels.count(label) == 1 else f"{stem}: {label}"
            results = {r["name"]: r for r in warm.values() if r.get("label") == label and "median_us" in r}
            series.append((name, results, ref))
        uvicorn = warm.get("uvicorn", {}).get("median_us", float("nan"))
        floor = warm.get("python-floor", {}).get("median_us", float("nan"))
        references.append((stem, ref, uvicorn, floor))
    return series, references


def draw(out: str, files: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series, references = _series(files)
    scenarios = [(key, text) for key, text in SCENARIOS if any(key in results for _, results, _ in series)]
    fig, ax = plt.subplots(figsize=(12, 5.5), dpi=110)
    width = 0.8 / max(1, len(series))
    for i, (name, results, reference) in enumerate(series):
        xs, heights, low, high = [], [], [], []
        for x, (key, _) in enumerate(scenarios):
            if key in results:
                r = results[key]
                xs.append(x - 0.4 + width * (i + 0.5))
                heights.append(r["median_us"])
                low.append(r["median_us"] - r["min_us"])
                high.append(r["max_us"] - r["median_us"])
        ax.bar(xs, heights, width * 0.92, label=name, color=COLOURS[i % len(COLOURS)])
        ax.errorbar(xs, heights, yerr=[low, high], fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
        for x, h in zip(xs, heights, strict=True):  # at the foot of the bar, below the reference lines
            # the ratio is to the reference measured in the same run as the bar
            text = f"{h:.0f}\n{h / reference:.2f}x"
            ax.text(x, 4, text, ha="center", va="bottom", fontsize=7, color="white", fontweight="bold")
    styles = ["--", "-.", ":"]
    for j, (stem, ref, uvicorn, floor) in enumerate(references):
        tag = f" ({stem})" if len(references) > 1 else ""
        style = styles[j % len(styles)]
        ax.axhline(ref, color="#d62728", linestyle=style, linewidth=1.2, label=f"awslambdaric + Mangum{tag}")
        if j == len(references) - 1:
            ax.axhline(
                ref * 0.5, color="#d62728", linestyle=":", linewidth=1, alpha=0.7, label="goal: 0.5x that"
            )
            ax.axhline(uvicorn, color="#555555", linestyle=":", linewidth=1, label="uvicorn, one request")
            if floor == floor:  # not nan: the run measured it
                ax.axhline(floor, color="#8c564b", linestyle="--", linewidth=1, label="python-floor")
    ax.set_xticks(range(len(scenarios)), [text for _, text in scenarios], fontsize=8)
    ax.set_ylabel("CPU µs per invocation (runtime process)")
    ax.set_title(
        "CPU µs per invocation of the runtime process (median of rounds; whiskers: spread of rounds;"
        " label: µs and x awslambdaric + Mangum)",
        fontsize=9,
    )
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=6, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
