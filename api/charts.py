"""Charts drawn on the server as inline SVG (matplotlib), so pages need no script or CDN.
The SVG carries no inline CSS (the pages' Content-Security-Policy allows none): matplotlib's
style attributes become the SVG presentation attributes of the same names."""

from __future__ import annotations

import io
import re
import threading
from typing import Any

_LOCK = threading.Lock()  # pyplot's state is global: one figure at a time
_STYLE_ELEMENT = re.compile(r"<style[^>]*>.*?</style>\s*", re.S)
_STYLE_ATTRIBUTE = re.compile(r'style="([^"]*)"')


def _presentation(m: re.Match[str]) -> str:
    pairs = (p.split(":", 1) for p in m.group(1).split(";") if ":" in p)
    return " ".join(f'{k.strip()}="{v.strip()}"' for k, v in pairs)


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    text = _STYLE_ATTRIBUTE.sub(_presentation, _STYLE_ELEMENT.sub("", text))
    # matplotlib's one style rule, *{stroke-linejoin: round; stroke-linecap: butt}, inherited
    text = text.replace("<svg ", '<svg stroke-linejoin="round" stroke-linecap="butt" ', 1)
    return text[text.index("<svg") :]


def line_chart(x: list[str], series: dict[str, list[float | None]], ylabel: str, title: str) -> str:
    """Lines over categorical x values (dates); None leaves a gap; the legend sits below the
    axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with _LOCK:
        fig, ax = plt.subplots(figsize=(7, 2.8), dpi=100)
        try:
            styles = ["-o", "--s", ":^"]
            for (name, values), style in zip(series.items(), styles * 3, strict=False):
                ys = [float("nan") if v is None else v for v in values]
                ax.plot(x, ys, style, label=name, linewidth=2)
            ax.set_ylabel(ylabel)
            ax.set_ylim(-3, 103)  # a point at 0 or 100 is drawn whole
            ax.set_yticks([0, 25, 50, 75, 100])
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
            # below the axes, never over a data point
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=len(series))
            return _svg(fig)
        finally:
            plt.close(fig)


def bar_chart(labels: list[str], values: list[float | None], xlabel: str, title: str) -> str:
    """Horizontal bars, one per label (None: no bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with _LOCK:
        fig, ax = plt.subplots(figsize=(6, 0.45 * max(len(labels), 2) + 0.8), dpi=100)
        try:
            ax.barh(labels, [0 if v is None else v for v in values], color="#3b78c2")
            ax.invert_yaxis()
            ax.set_xlabel(xlabel)
            ax.set_title(title, fontsize=10)
            ax.grid(axis="x", alpha=0.3)
            return _svg(fig)
        finally:
            plt.close(fig)


def panels_chart(
    x: list[str], panels: dict[str, dict[str, list[float | None]]], ylabel: str
) -> str:
    """Small multiples: one panel per title, each with its lines over x (None: a gap)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(panels), 1)
    cols = min(n, 2)
    rows = (n + cols - 1) // cols
    with _LOCK:
        fig, axes = plt.subplots(
            rows, cols, figsize=(7.5, 2.4 * rows), dpi=100, squeeze=False, sharex=True
        )
        try:
            styles = ["-o", "--s", ":^"]
            for ax, (title, series) in zip(axes.flat, panels.items(), strict=False):
                for (name, values), style in zip(series.items(), styles * 3, strict=False):
                    ys = [float("nan") if v is None else v for v in values]
                    ax.plot(x, ys, style, label=name, linewidth=2)
                ax.set_title(title, fontsize=9)
                ax.set_ylim(bottom=0)
                ax.grid(alpha=0.3)
                ax.tick_params(axis="x", labelsize=7, rotation=30)
                ax.set_ylabel(ylabel, fontsize=8)
            for ax in list(axes.flat)[len(panels) :]:
                ax.set_visible(False)
            fig.tight_layout()
            if panels:  # one legend for every panel, below them: it hides no data point
                handles, names = axes.flat[0].get_legend_handles_labels()
                fig.legend(
                    handles,
                    names,
                    fontsize=8,
                    loc="upper center",
                    ncol=len(names),
                    bbox_to_anchor=(0.5, 0.0),
                )
            return _svg(fig)
        finally:
            plt.close(fig)


def rate_chart(rows: list[dict[str, Any]], line: float | None, title: str) -> str:
    """Flag rates in percent, one horizontal bar per group with its 95% interval, and the
    four-fifths line (``line``: 0.8 x the highest rate); the legend sits below the plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rated = [r for r in rows if r.get("rate") is not None]
    with _LOCK:
        fig, ax = plt.subplots(
            figsize=(6.5, 0.45 * max(len(rated), 2) + 1.6), dpi=100, layout="constrained"
        )
        try:
            labels = [str(r["group"]) for r in rated]
            rates = [100 * r["rate"] for r in rated]
            err = [
                [100 * (r["rate"] - r["low"]) for r in rated],
                [100 * (r["high"] - r["rate"]) for r in rated],
            ]
            ax.barh(labels, rates, color="#3b78c2", label="flag rate")
            ax.errorbar(
                rates,
                labels,
                xerr=err,
                fmt="none",
                ecolor="#1d2733",
                capsize=3,
                label="95% interval",
            )
            if line is not None:
                ax.axvline(
                    100 * line,
                    color="#b3261e",
                    linestyle="--",
                    label=f"four-fifths of the highest ({100 * line:.1f}%)",
                )
            ax.invert_yaxis()
            ax.set_xlabel("flag rate (% of the group's officers)")
            ax.set_title(title, fontsize=10)
            ax.grid(axis="x", alpha=0.3)
            fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
            return _svg(fig)
        finally:
            plt.close(fig)
