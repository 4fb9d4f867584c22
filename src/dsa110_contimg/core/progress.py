"""The one terminal progress bar (catalogue ingests, reprocessing).

``label [#########.....................] 1,200/40,000 rows  12.3 s`` on stderr,
redrawn in place; shown only on a terminal unless asked for, so logs and pipes stay
clean.
"""

from __future__ import annotations

import sys
import time

WIDTH = 30


class ProgressBar:
    """A one-line progress bar.

    Parameters
    ----------
    total : int
        Number of units at completion.
    label : str
        Text before the bar.
    unit : str
        Name of the units (``rows``, ``images``).
    stream : file-like, optional
        Where to draw (default stderr).
    enabled : bool, optional
        Force the bar on or off; by default on when ``stream`` is a terminal and
        ``total >= min_total > 0``.
    min_total : int
        Smallest ``total`` worth a bar by default.
    """

    def __init__(self, total: int, label: str, *, unit: str = "", stream=None,
                 enabled: bool | None = None, min_total: int = 1):
        self.total = max(int(total), 1)
        self.label, self.unit = label, unit
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = (hasattr(self.stream, "isatty") and self.stream.isatty()
                       and int(total) >= max(min_total, 1))
        self.enabled = bool(enabled)
        self.t0 = time.monotonic()
        self._open = False

    @property
    def elapsed_s(self) -> float:
        """Seconds since the bar was made."""
        return time.monotonic() - self.t0

    def update(self, done: int, note: str | None = None) -> None:
        """Redraw at ``done`` units; ``note`` follows the count (default: elapsed seconds)."""
        if not self.enabled:
            return
        fill = min(WIDTH, int(WIDTH * done / self.total))
        note = f"{self.elapsed_s:6.1f} s" if note is None else note
        self.stream.write(f"\r{self.label} [{'#' * fill}{'.' * (WIDTH - fill)}] "
                          f"{done:,d}/{self.total:,d} {self.unit}{', ' if self.unit and note else ' '}"
                          f"{note} ")
        self.stream.flush()
        self._open = True

    def close(self) -> None:
        """End the line (once; nothing when the bar never drew)."""
        if self.enabled and self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


__all__ = ["ProgressBar"]
