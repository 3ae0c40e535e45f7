"""`planner serve --plot FILE.svg|.png`: each mode's frontier as a picture for a pull request or
a design doc (output tokens/s per chip against tokens/s per user, points labelled with chips and
batch). Needs matplotlib (`pip install matplotlib`, or the `plot` extra from a checkout); the terminal plot of `plan` does not."""

from __future__ import annotations

from pathlib import Path

from planner.errors import UsageError

STYLES = (("o", "-", 10), ("s", "--", 7), ("^", ":", 4))  # per mode: marker, line, marker size


def coincide(a: list[tuple[float, float]], b: list[tuple[float, float]], rel: float = 0.01) -> bool:
    """Whether two frontiers are the same points (within `rel`), so that one would hide the other."""
    return len(a) == len(b) and all(
        abs(x1 - x2) <= rel * abs(x2) and abs(y1 - y2) <= rel * abs(y2) for (x1, y1), (x2, y2) in zip(a, b)
    )


def pyplot(path: Path):
    """matplotlib.pyplot on the Agg backend, and a check that the picture's folder exists."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib: pip install matplotlib (or pip install '.[plot]' in a checkout of planner)"
        ) from None
    if not path.absolute().parent.is_dir():
        raise UsageError(f"--plot: folder {str(path.absolute().parent)!r} does not exist")
    return plt


def save(plt, fig, path: Path) -> None:
    """Write `fig` (no date in an SVG: the same input gives the same file) and close it."""
    metadata = {"Date": None} if path.suffix.lower() == ".svg" else {}
    try:
        fig.savefig(path, format=path.suffix.lower().lstrip("."), metadata=metadata)
    except OSError as err:
        raise UsageError(f"--plot: cannot write {str(path)!r}: {err.strerror or err}") from None
    finally:
        plt.close(fig)


def draw(result, path: Path) -> None:
    """Write the picture; its format follows the file name (.svg or .png)."""
    plt = pyplot(path)
    plan = result.request.plan
    fig, ax = plt.subplots(figsize=(8, 5))
    drawn = []  # (label, points) of the modes drawn so far
    for m, (marker, line, size) in zip(result.modes, STYLES):
        if not m.frontier:
            continue
        xs = [d.tokens_per_s_per_user for d in m.frontier]
        ys = [d.output_tokens_per_s_per_chip for d in m.frontier]
        same = next((label for label, points in drawn if coincide(points, list(zip(xs, ys)))), None)
        # Each mode its own marker, size and line: a mode drawn over another's points leaves them
        # visible (hollow, larger marks first), and the legend says when two frontiers coincide.
        ax.plot(
            xs,
            ys,
            marker=marker,
            linestyle=line,
            markersize=size,
            markerfacecolor="none",
            label=m.mode.label + (f" (on {same}'s points, within 1%)" if same else ""),
        )
        drawn.append((m.mode.label, list(zip(xs, ys))))
        if same:
            continue  # its labels are the other mode's
        for d, x, y in zip(m.frontier, xs, ys):
            label = f"{d.decode.chips}x{d.decode.batch}"
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens/s per user (1 / time per output token)")
    ax.set_ylabel("output tokens/s per chip")
    w = plan.workload
    ax.set_title(
        f"{plan.model.name} on {plan.cluster.name}: {w.input_tokens} in, {w.output_tokens} out "
        "(labels: decode chips x batch)",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save(plt, fig, path)
