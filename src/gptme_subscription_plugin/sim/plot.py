"""Each slot's weekly and 5-hour use over time under one policy (matplotlib, optional)."""

from __future__ import annotations

from pathlib import Path

from .engine import RunResult
from .model import DAY


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed (one line, for the CLI)."""


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib: pip install 'gptme-subscription-plugin[plot]'"
        ) from None


def plot_run(result: RunResult, start: float, names: list[str], title: str, path: Path) -> Path:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = [(t - start) / DAY for t, _, _ in result.samples]
    fig, (week_ax, five_ax, live_ax) = plt.subplots(
        3, 1, figsize=(12, 7), sharex=True, gridspec_kw={"height_ratios": [3, 3, 1]}
    )
    for i, name in enumerate(names):
        week_ax.plot(days, [v[i][1] * 100 for _, _, v in result.samples], label=name)
        five_ax.plot(days, [v[i][0] * 100 for _, _, v in result.samples], label=name, lw=0.8)
        live_ax.fill_between(
            days,
            i,
            i + 0.8,
            where=[live == name for _, live, _ in result.samples],
            step="post",
            label=name,
        )
    week_ax.set_ylabel("weekly use %")
    five_ax.set_ylabel("5-hour use %")
    live_ax.set_ylabel("live")
    live_ax.set_yticks([i + 0.4 for i in range(len(names))], names)
    live_ax.set_xlabel("days")
    week_ax.legend(loc="upper left", ncol=len(names))
    week_ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
