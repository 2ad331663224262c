"""Numpy-only drawing for the scaling panel and plan plot: a canvas, lines, a 3×5 pixel font, PNG."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

# 3×5 glyphs, one 3-bit row each from the top (bit 2 = left column).
FONT = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 3, 1, 7),
    "4": (5, 5, 7, 1, 1), "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 2, 2, 2),
    "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7), "A": (2, 5, 7, 5, 5), "B": (6, 5, 6, 5, 6),
    "C": (3, 4, 4, 4, 3), "D": (6, 5, 5, 5, 6), "E": (7, 4, 6, 4, 7), "F": (7, 4, 6, 4, 4),
    "G": (3, 4, 5, 5, 3), "H": (5, 5, 7, 5, 5), "I": (7, 2, 2, 2, 7), "J": (1, 1, 1, 5, 2),
    "K": (5, 5, 6, 5, 5), "L": (4, 4, 4, 4, 7), "M": (5, 7, 7, 5, 5), "N": (6, 5, 5, 5, 5),
    "O": (2, 5, 5, 5, 2), "P": (6, 5, 6, 4, 4), "Q": (2, 5, 5, 6, 3), "R": (6, 5, 6, 5, 5),
    "S": (3, 4, 2, 1, 6), "T": (7, 2, 2, 2, 2), "U": (5, 5, 5, 5, 7), "V": (5, 5, 5, 5, 2),
    "W": (5, 5, 7, 7, 5), "X": (5, 5, 2, 5, 5), "Y": (5, 5, 2, 2, 2), "Z": (7, 1, 2, 4, 7),
    " ": (0, 0, 0, 0, 0), ".": (0, 0, 0, 0, 2), ":": (0, 2, 0, 2, 0), "-": (0, 0, 7, 0, 0),
    "=": (0, 7, 0, 7, 0), "%": (5, 1, 2, 4, 5), "/": (1, 1, 2, 4, 4), "(": (1, 2, 2, 2, 1),
    ")": (4, 2, 2, 2, 4), "+": (0, 2, 7, 2, 0), "_": (0, 0, 0, 0, 7), ",": (0, 0, 0, 2, 4),
    "<": (1, 2, 4, 2, 1), ">": (4, 2, 1, 2, 4), "?": (7, 1, 3, 0, 2),
}
_GLYPHS = {c: np.array([[(row >> (2 - k)) & 1 for k in range(3)] for row in rows], dtype=bool)
           for c, rows in FONT.items()}

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
RED = (200, 40, 40)
GREEN = (30, 150, 60)
BLUE = (50, 100, 200)
GREY = (170, 170, 170)


class Canvas:
    """An RGB image uint8 (height, width, 3) with clipped drawing primitives (pixel coordinates,
    y down).

    Args:
        width: [px].
        height: [px].
        background: RGB.
    """

    def __init__(self, width: int, height: int, background: tuple[int, int, int] = WHITE) -> None:
        self.pixels = np.empty((height, width, 3), dtype=np.uint8)
        self.pixels[:] = background
        self.width, self.height = width, height

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: tuple[int, int, int],
             fill: bool = False) -> None:
        """A rectangle from (x0, y0) to (x1, y1) inclusive: outline, or filled."""
        x0, x1 = sorted((max(0, x0), min(self.width - 1, x1)))
        y0, y1 = sorted((max(0, y0), min(self.height - 1, y1)))
        if fill:
            self.pixels[y0:y1 + 1, x0:x1 + 1] = color
            return
        self.pixels[y0, x0:x1 + 1] = color
        self.pixels[y1, x0:x1 + 1] = color
        self.pixels[y0:y1 + 1, x0] = color
        self.pixels[y0:y1 + 1, x1] = color

    def polyline(self, xs: np.ndarray, ys: np.ndarray, color: tuple[int, int, int]) -> None:
        """Straight segments through the points (xs[i], ys[i]) [px], sampled densely."""
        xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
        if len(xs) == 1:
            xs, ys = np.repeat(xs, 2), np.repeat(ys, 2)
        for (xa, ya), (xb, yb) in zip(zip(xs[:-1], ys[:-1]), zip(xs[1:], ys[1:])):
            n = int(max(abs(xb - xa), abs(yb - ya))) + 2
            px = np.rint(np.linspace(xa, xb, n)).astype(int)
            py = np.rint(np.linspace(ya, yb, n)).astype(int)
            ok = (px >= 0) & (px < self.width) & (py >= 0) & (py < self.height)
            self.pixels[py[ok], px[ok]] = color

    def text(self, x: int, y: int, text: str, color: tuple[int, int, int] = BLACK,
             scale: int = 2) -> None:
        """``text`` (upper-cased; unknown characters drawn as ``?``) with its top-left at (x, y)."""
        for k, char in enumerate(text.upper()):
            glyph = np.kron(_GLYPHS.get(char, _GLYPHS["?"]), np.ones((scale, scale), dtype=bool))
            gx = x + k * 4 * scale
            h, w = glyph.shape
            if gx < 0 or y < 0 or gx + w > self.width or y + h > self.height:
                continue
            region = self.pixels[y:y + h, gx:gx + w]
            region[glyph] = color

    def png(self) -> bytes:
        """The image as PNG bytes (8-bit RGB, zlib)."""
        rows = np.concatenate([np.zeros((self.height, 1), dtype=np.uint8),
                               self.pixels.reshape(self.height, -1)], axis=1)

        def chunk(kind: bytes, data: bytes) -> bytes:
            return (struct.pack(">I", len(data)) + kind + data
                    + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the image as a PNG file."""
        with open(path, "wb") as f:
            f.write(self.png())
