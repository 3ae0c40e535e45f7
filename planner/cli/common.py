"""What every command shares: output helpers (stdout or an atomic -o file, the console, the
progress line) and the option text parsers. Imports no command module; the options themselves
are in planner.config.options."""

from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path

import typer

from planner.config.flagtext import fraction_flag, int_list, phase_list, seconds_flag, tokens_flag, word_list  # noqa: F401
from planner.errors import UsageError

NON_TTY_WIDTH = 80  # tables and plots written to a pipe or a file


# --- output -----------------------------------------------------------------------------------


def emit(text: str, output: Path | None) -> None:
    """Write to stdout, or atomically to `output`: a temporary file in the same folder, renamed
    over the target once complete, so an error or Ctrl-C leaves the old file or none."""
    if output is None or str(output) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    folder = output.absolute().parent
    if not folder.is_dir():
        raise UsageError(f"-o/--output: folder {str(folder)!r} does not exist")
    if output.is_dir():
        raise UsageError(f"-o/--output: {str(output)!r} is a folder; give a file name")
    import tempfile  # only -o needs it: the common case (stdout) starts without it

    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise UsageError(f"-o/--output: cannot write in {str(folder)!r}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode_for(output))
        os.replace(tmp, output)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise UsageError(f"-o/--output: cannot write {str(output)!r}: {err.strerror or err}") from None
        raise


def mode_for(output: Path) -> int:
    """Keep the mode of the file being replaced; a new file gets the usual 0666 & ~umask
    (mkstemp's own files are private, which would surprise)."""
    try:
        return stat.S_IMODE(output.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def check_format(fmt: str) -> None:
    from planner.render.common import FORMATS

    if fmt not in FORMATS:
        raise UsageError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")


def use_ascii(requested: bool) -> bool:
    """ASCII when asked for, or when stdout cannot encode box-drawing characters."""
    encoding = (getattr(sys.stdout, "encoding", None) or "utf-8").lower().replace("-", "")
    return requested or not encoding.startswith("utf")


def console_for(output: Path | None):
    """A console on stdout (terminal width, colour unless NO_COLOR) or, for pipes and -o files,
    a fixed 80 columns without any escape codes."""
    from rich.console import Console

    if output is not None:
        return Console(
            file=io.StringIO(),
            width=NON_TTY_WIDTH,
            color_system=None,
            highlight=False,
            emoji=False,
            force_terminal=False,
            legacy_windows=False,
        )
    tty = sys.stdout.isatty()
    colour = tty and not os.environ.get("NO_COLOR")
    return Console(
        file=sys.stdout,
        width=None if tty else NON_TTY_WIDTH,
        highlight=False,
        emoji=False,
        color_system="auto" if colour else None,
        legacy_windows=False,
    )


def render_table(draw, output: Path | None) -> None:
    """Call `draw(console)`; to stdout, or rendered as plain text and written atomically."""
    if output is not None and str(output) == "-":
        output = None
    console = console_for(output)
    draw(console)
    if output is not None:
        emit(console.file.getvalue(), output)


def emit_format(fmt: str, output: Path | None, *, json, csv, markdown, table) -> None:
    """--format: the JSON, CSV or Markdown text (callables, so only the one asked for is rendered),
    else the table `table(console)` draws."""
    text = {"json": json, "csv": csv, "markdown": markdown}.get(fmt)
    if text is not None:
        emit(text(), output)
    else:
        render_table(table, output)


def searching(ascii_only: bool):
    from planner.render.progress import Activity

    return Activity("searching layouts", enabled=sys.stderr.isatty(), ascii_only=ascii_only)


class PlainUsage(typer.core.TyperCommand):
    """A command whose usage line shows a required argument as `NAME`, not typer's `{NAME}`."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in super().collect_usage_pieces(ctx)]
