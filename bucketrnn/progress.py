"""A dependency-free progress bar on a text stream (stderr by default).

On a terminal it redraws one line (``\\r``) at most a few times a second; on a pipe or a log file
it prints a full line every ``log_seconds`` so logs stay readable.

Examples
--------
>>> import io
>>> out = io.StringIO()
>>> bar = Progress(out, log_seconds=0)
>>> bar.start("epoch 1/1", total=4)
>>> bar.update(2, tokens_per_s=1000.0, loss=5.0)
>>> "2/4" in out.getvalue() and "1,000 tok/s" in out.getvalue()
True
"""

from __future__ import annotations

import time

__all__ = ["Progress", "format_seconds"]


def format_seconds(seconds: float) -> str:
    """``75`` -> ``'1:15'``, ``3725`` -> ``'1:02:05'``."""
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Progress of one loop: done/total, a bar, throughput, loss and ETA.

    Parameters
    ----------
    stream : file-like
        Where to draw (``sys.stderr`` in the training loop).
    enabled : bool
        False draws nothing.
    width : int
        Bar characters.
    refresh : float
        Seconds between redraws on a terminal.
    log_seconds : float
        Seconds between lines when ``stream`` is not a terminal.
    """

    def __init__(self, stream, enabled: bool = True, width: int = 24, refresh: float = 0.25,
                 log_seconds: float = 30.0):
        self.stream, self.enabled, self.width = stream, bool(enabled), int(width)
        self.refresh, self.log_seconds = refresh, log_seconds
        isatty = getattr(stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.label, self.total, self.first = "", 0, 0
        self.started = self.drawn = 0.0
        self.line_open = False

    def start(self, label: str, total: int, done: int = 0) -> None:
        self.label, self.total, self.first = label, int(total), int(done)
        self.started = time.perf_counter()
        self.drawn = -1e9

    def update(self, done: int, **figures) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        last = done >= self.total
        wait = self.refresh if self.tty else self.log_seconds
        if now - self.drawn < wait and not last:
            return
        self.drawn = now
        frac = done / self.total if self.total else 1.0
        rate = (done - self.first) / max(now - self.started, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        filled = int(round(frac * self.width))
        parts = [f"{self.label} {done}/{self.total}",
                 "[" + "#" * filled + "." * (self.width - filled) + f"] {100 * frac:3.0f}%"]
        tps = figures.pop("tokens_per_s", None)
        if tps is not None:
            parts.append(f"{tps:,.0f} tok/s")
        parts += [f"{k} {v:.4g}" for k, v in figures.items()]
        parts.append(f"ETA {format_seconds(eta)}" if not last else
                     f"took {format_seconds(now - self.started)}")
        text = "  ".join(parts)
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")
            self.line_open = True
            if last:
                self.stream.write("\n")
                self.line_open = False
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def break_line(self) -> None:
        """End the bar's open line, so what is printed next (a log line) starts a line."""
        if self.enabled and self.line_open:
            self.stream.write("\n")
            self.stream.flush()
        self.line_open = False

    def close(self) -> None:
        self.break_line()
