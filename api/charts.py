"""Charts drawn on the server as inline SVG (matplotlib), so pages need no script or CDN."""

from __future__ import annotations

import io
import threading
from typing import Any

_LOCK = threading.Lock()  # pyplot's state is global: one figure at a time


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg") :]


def line_chart(x: list[str], series: dict[str, list[float | None]], ylabel: str, title: str) -> str:
    """Lines over categorical x values (dates); None leaves a gap."""
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
            ax.set_ylim(0, 100)
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="lower left")
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
