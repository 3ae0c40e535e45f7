"""A progress line on stderr for slow work, and nothing at all for fast work.

It appears only when stderr is a terminal and the work has taken longer than `delay_s`,
draws on stderr only (stdout stays clean for tables, JSON and CSV) and erases itself when the
work ends. Without a known total it pulses; `update(done, total)` turns it into a bar.
With NO_COLOR, TERM=dumb or --ascii it is one plain line redrawn with carriage returns: no
escape codes at all.

Everything is imported and built when the work starts, on the calling thread: a busy search
holds the interpreter lock for long stretches, and a timer thread that had to import rich
first might not get to draw before the search ends.
"""

from __future__ import annotations

import os
import sys
import threading
import time

DELAY_S = 0.5  # PLANNER_PROGRESS_DELAY_S overrides it (seconds, >= 0; e.g. 0 to see the line on any search)
SPINNER = "|/-\\"


class Activity:
    """Context manager: `with Activity("searching", enabled=sys.stderr.isatty()) as a: ...`."""

    def __init__(
        self, label: str, *, enabled: bool, delay_s: float | None = None, ascii_only: bool = False, file=None
    ) -> None:
        self.label = label
        self.enabled = enabled
        self.delay_s = _delay_s() if delay_s is None else delay_s
        self.plain = ascii_only or bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb"
        self.file = file
        self.shown = False
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._timer: threading.Timer | None = None
        self._progress = None  # rich Progress, or None in plain mode
        self._task = None
        self._last: tuple[int, int] | None = None
        self._plain: threading.Thread | None = None

    def __enter__(self) -> Activity:
        if self.enabled:
            self.file = self.file or sys.stderr
            if not self.plain:
                self._progress = self._rich_progress()
            self._timer = threading.Timer(self.delay_s, self._show)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._done.set()
            if self._timer is not None:
                self._timer.cancel()
            if self.shown and self._progress is not None:
                self._progress.stop()
        if self._plain is not None:
            self._plain.join()

    def update(self, done: int, total: int) -> None:
        """Report progress (e.g. candidates evaluated out of all); cheap when nothing is shown."""
        self._last = (done, total)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=done, total=total)

    def _show(self) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self.shown = True
            if self._progress is not None:
                self._progress.start()
            else:
                self._plain = threading.Thread(target=self._draw_plain, daemon=True)
                self._plain.start()

    def _rich_progress(self):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

        console = Console(file=self.file, highlight=False)
        progress = Progress(
            SpinnerColumn("dots"),
            TextColumn(self.label, markup=False),
            BarColumn(bar_width=30),
            TaskProgressColumn(text_format="{task.percentage:>3.0f} %"),  # blank without a total
            TimeElapsedColumn(),
            console=console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        done, total = self._last or (0, None)
        self._task = progress.add_task(self.label, total=total, completed=done)
        return progress

    def _draw_plain(self) -> None:
        """'| searching layouts  42 %  1.3 s', redrawn with carriage returns, then erased."""
        start, width, turn = time.monotonic() - self.delay_s, 0, 0
        while True:
            done, total = self._last or (0, 0)
            percent = f"  {100 * done // total:3d} %" if total else ""
            line = f"{SPINNER[turn % 4]} {self.label}{percent}  {time.monotonic() - start:.1f} s"
            self.file.write("\r" + line.ljust(width))
            self.file.flush()
            width, turn = len(line), turn + 1
            if self._done.wait(0.1):
                break
        self.file.write("\r" + " " * width + "\r")
        self.file.flush()


def _delay_s() -> float:
    """DELAY_S, or PLANNER_PROGRESS_DELAY_S when it is a number of seconds >= 0 (else ignored)."""
    try:
        value = float(os.environ.get("PLANNER_PROGRESS_DELAY_S", DELAY_S))
    except ValueError:
        return DELAY_S
    return value if value >= 0 else DELAY_S
