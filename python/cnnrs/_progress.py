"""A tiny progress bar on stderr (no dependency). On a terminal it redraws in
place; otherwise it prints one line when the bar closes."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str = "", width: int = 28, stream=None):
        self.total = max(int(total), 1)
        self.desc = desc
        self.width = width
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.n = 0
        self.start = time.perf_counter()
        self.postfix = ""
        self._last = 0.0

    def update(self, n: int = 1, postfix: str = "") -> None:
        self.n = min(self.n + n, self.total)
        if postfix:
            self.postfix = postfix
        now = time.perf_counter()
        if self.tty and (now - self._last > 0.05 or self.n == self.total):
            self._last = now
            self.stream.write("\r" + self._line())
            self.stream.flush()

    def _line(self) -> str:
        frac = self.n / self.total
        filled = int(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        return (f"{self.desc} [{bar}] {self.n}/{self.total} {elapsed:5.1f}s "
                f"{rate:6.1f} it/s {self.postfix}")

    def close(self) -> None:
        self.stream.write(("\r" if self.tty else "") + self._line() + "\n")
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
