"""Training curves as a PNG, with no plotting library: a small raster
renderer (lines, axes, a 5x7 bitmap font) and a PNG writer (zlib + struct)."""

from __future__ import annotations

import struct
import zlib
from typing import Dict, List, Sequence, Tuple

import numpy as np

__all__ = ["write_png", "plot_history", "plot_segmentation_history", "Canvas",
           "segmentation_panel"]

# 5x7 glyphs, one string of 7 rows per character ('#' = ink).
_FONT = {
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11110 00001 00001 01110 00001 00001 11110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    ":": "00000 01100 01100 00000 01100 01100 00000",
    " ": "00000 00000 00000 00000 00000 00000 00000",
    "%": "11001 11010 00010 00100 01000 01011 10011",
    "(": "00010 00100 01000 01000 01000 00100 00010",
    ")": "01000 00100 00010 00010 00010 00100 01000",
    "/": "00001 00010 00010 00100 01000 01000 10000",
    "a": "00000 00000 01110 00001 01111 10001 01111",
    "b": "10000 10000 10110 11001 10001 10001 11110",
    "c": "00000 00000 01110 10000 10000 10001 01110",
    "d": "00001 00001 01101 10011 10001 10001 01111",
    "e": "00000 00000 01110 10001 11111 10000 01110",
    "f": "00110 01001 01000 11100 01000 01000 01000",
    "g": "00000 01111 10001 10001 01111 00001 01110",
    "h": "10000 10000 10110 11001 10001 10001 10001",
    "i": "00100 00000 01100 00100 00100 00100 01110",
    "k": "10000 10000 10010 10100 11000 10100 10010",
    "l": "01100 00100 00100 00100 00100 00100 01110",
    "m": "00000 00000 11010 10101 10101 10001 10001",
    "n": "00000 00000 10110 11001 10001 10001 10001",
    "o": "00000 00000 01110 10001 10001 10001 01110",
    "p": "00000 00000 11110 10001 11110 10000 10000",
    "r": "00000 00000 10110 11001 10000 10000 10000",
    "s": "00000 00000 01110 10000 01110 00001 11110",
    "t": "01000 01000 11100 01000 01000 01001 00110",
    "u": "00000 00000 10001 10001 10001 10011 01101",
    "v": "00000 00000 10001 10001 10001 01010 00100",
    "w": "00000 00000 10001 10001 10101 10101 01010",
    "x": "00000 00000 10001 01010 00100 01010 10001",
    "y": "00000 00000 10001 10001 01111 00001 01110",
    "z": "00000 00000 11111 00010 00100 01000 11111",
    "j": "00010 00000 00110 00010 00010 10010 01100",
    "q": "00000 00000 01101 10011 01111 00001 00001",
}


def write_png(path: str, rgb: np.ndarray) -> None:
    """Writes an (H, W, 3) uint8 array as an 8-bit RGB PNG."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(png)


class Canvas:
    """An RGB raster with a few drawing primitives."""

    def __init__(self, width: int, height: int, bg=(255, 255, 255)):
        self.img = np.empty((height, width, 3), dtype=np.uint8)
        self.img[:] = bg

    def pixel(self, x: int, y: int, color) -> None:
        if 0 <= y < self.img.shape[0] and 0 <= x < self.img.shape[1]:
            self.img[y, x] = color

    def line(self, x0, y0, x1, y1, color, width: int = 1) -> None:
        x0, y0, x1, y1 = (int(round(v)) for v in (x0, y0, x1, y1))
        n = max(abs(x1 - x0), abs(y1 - y0), 1)
        for t in range(n + 1):
            x = x0 + (x1 - x0) * t / n
            y = y0 + (y1 - y0) * t / n
            for d in range(width):
                self.pixel(int(round(x)), int(round(y)) + d - width // 2, color)

    def text(self, x: int, y: int, s: str, color=(0, 0, 0), scale: int = 1) -> None:
        for i, ch in enumerate(s.lower()):
            glyph = _FONT.get(ch, _FONT[" "]).split()
            for r, row in enumerate(glyph):
                for c, bit in enumerate(row):
                    if bit == "1":
                        for dy in range(scale):
                            for dx in range(scale):
                                self.pixel(x + (i * 6 + c) * scale + dx, y + r * scale + dy, color)

    def blit(self, x: int, y: int, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        self.img[y:y + h, x:x + w] = rgb


def _panel(cv: Canvas, box: Tuple[int, int, int, int], series: Dict[str, Sequence[float]],
           colors: Dict[str, Tuple[int, int, int]], title: str) -> None:
    x0, y0, w, h = box
    values = [v for s in series.values() for v in s if np.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    n = max(len(s) for s in series.values())
    grey = (225, 225, 225)
    for k in range(5):
        gy = y0 + h - k * h / 4
        cv.line(x0, gy, x0 + w, gy, grey)
        cv.text(x0 - 42, int(gy) - 3, f"{lo + (hi - lo) * k / 4:.3f}")
    cv.line(x0, y0, x0, y0 + h, (0, 0, 0))
    cv.line(x0, y0 + h, x0 + w, y0 + h, (0, 0, 0))
    for e in range(n):
        ex = x0 + (w * e / max(n - 1, 1))
        cv.line(ex, y0 + h, ex, y0 + h + 3, (0, 0, 0))
        cv.text(int(ex) - 3, y0 + h + 6, str(e + 1))
    cv.text(x0 + w // 2 - 15, y0 + h + 18, "epoch")
    cv.text(x0, y0 - 14, title, scale=1)
    lx = x0 + w - 110
    for name, s in series.items():
        pts = [(x0 + w * i / max(n - 1, 1), y0 + h - (v - lo) / (hi - lo) * h)
               for i, v in enumerate(s)]
        for (ax, ay), (bx, by) in zip(pts, pts[1:]):
            cv.line(ax, ay, bx, by, colors[name], width=2)
        for px, py in pts:
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    cv.pixel(int(px) + dx, int(py) + dy, colors[name])
        cv.line(lx, y0 - 11, lx + 15, y0 - 11, colors[name], width=2)
        cv.text(lx + 19, y0 - 14, name)
        lx += 60


def plot_history(history: List[dict], path: str, title: str = "") -> None:
    """Two panels (loss; accuracy) of train and test curves per epoch."""
    cv = Canvas(860, 340)
    cv.text(20, 8, title, scale=2)
    blue, orange = (31, 119, 180), (255, 127, 14)
    _panel(cv, (70, 50, 320, 230),
           {"train": [h["train_loss"] for h in history], "test": [h["test_loss"] for h in history]},
           {"train": blue, "test": orange}, "loss")
    _panel(cv, (510, 50, 320, 230),
           {"train": [h["train_acc"] for h in history], "test": [h["test_acc"] for h in history]},
           {"train": blue, "test": orange}, "accuracy")
    write_png(path, cv.img)


def plot_segmentation_history(history: List[dict], path: str, title: str = "") -> None:
    """Two panels: training loss, and validation Dice and IoU, per epoch."""
    cv = Canvas(860, 340)
    cv.text(20, 8, title, scale=2)
    blue, orange, green = (31, 119, 180), (255, 127, 14), (44, 160, 44)
    _panel(cv, (70, 50, 320, 230), {"train": [h["train_loss"] for h in history]},
           {"train": blue}, "loss")
    _panel(cv, (510, 50, 320, 230),
           {"dice": [h["val_dice"] for h in history], "iou": [h["val_iou"] for h in history]},
           {"dice": orange, "iou": green}, "validation")
    write_png(path, cv.img)


PANEL_MARGIN = 10
PANEL_BAND = 30


def segmentation_panel(panels: Sequence[Tuple[str, np.ndarray]],
                       scale: int = 0) -> np.ndarray:
    """Side-by-side (H, W, 3) uint8 images of one size, each titled above
    (e.g. input | ground truth | prediction). Images are magnified by the
    integer ``scale`` (default: ``max(1, 256 // max(H, W))``, so small
    crops stay legible).

    Layout: width ``n * W * scale + (n + 1) * PANEL_MARGIN``, height
    ``PANEL_BAND + H * scale + PANEL_MARGIN``."""
    h, w = panels[0][1].shape[:2]
    s = scale or max(1, 256 // max(h, w, 1))
    n = len(panels)
    cv = Canvas(n * w * s + (n + 1) * PANEL_MARGIN, PANEL_BAND + h * s + PANEL_MARGIN)
    for i, (title, rgb) in enumerate(panels):
        if rgb.shape[:2] != (h, w):
            raise ValueError(f"segmentation_panel: panel {i} is {rgb.shape[:2]}, not {(h, w)}")
        x = PANEL_MARGIN + i * (w * s + PANEL_MARGIN)
        big = np.repeat(np.repeat(rgb, s, axis=0), s, axis=1)
        cv.blit(x, PANEL_BAND, big)
        ts = 2 if len(title) * 12 <= w * s else 1
        cv.text(x, (PANEL_BAND - 7 * ts) // 2, title, scale=ts)
    return cv.img
