#!/usr/bin/env python3
"""Draws the Tahoe Notifier icons (app icon and the five tray states) as RGBA PNGs.

Standard library only, so anyone can regenerate them: `python3 icons/generate.py`.
Shapes are rendered at 4x and averaged down, which gives smooth edges without an image library.
"""
import math
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SS = 4  # supersampling factor

BLUE = (37, 99, 235)
AMBER = (217, 119, 6)
GRAY = (107, 114, 128)
SLATE = (71, 85, 105)
RED = (220, 38, 38)
WHITE = (255, 255, 255)


def png(path, size, pixels):
    raw = b"".join(b"\x00" + bytes(pixels[y * size * 4:(y + 1) * size * 4]) for y in range(size))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def render(size, layers):
    """layers: list of (inside(x, y) -> bool over unit coordinates, colour). Later layers paint over."""
    out = []
    n = size * SS
    for py in range(size):
        for px in range(size):
            acc = [0.0, 0.0, 0.0, 0.0]
            for sy in range(SS):
                for sx in range(SS):
                    x = (px * SS + sx + 0.5) / n
                    y = (py * SS + sy + 0.5) / n
                    colour = None
                    for inside, c in layers:
                        if inside(x, y):
                            colour = c
                    if colour is not None:
                        acc[0] += colour[0]
                        acc[1] += colour[1]
                        acc[2] += colour[2]
                        acc[3] += 255
            k = SS * SS
            a = acc[3] / k
            if a == 0:
                out += [0, 0, 0, 0]
            else:
                cov = acc[3] / 255
                out += [round(acc[0] / cov), round(acc[1] / cov), round(acc[2] / cov), round(a)]
    return out


def circle(cx, cy, r):
    return lambda x, y: (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def rect(x0, y0, x1, y1, radius=0.0):
    def inside(x, y):
        if not (x0 <= x <= x1 and y0 <= y <= y1):
            return False
        if radius == 0:
            return True
        qx = max(x0 + radius - x, 0, x - (x1 - radius))
        qy = max(y0 + radius - y, 0, y - (y1 - radius))
        return qx * qx + qy * qy <= radius * radius
    return inside


def bell():
    """A notification bell: dome, flared rim and clapper, in unit coordinates."""
    def inside(x, y):
        # Dome: upper half-ellipse joined to a body that widens towards the rim.
        if 0.28 <= y <= 0.66:
            t = (y - 0.28) / 0.38
            half = 0.15 + 0.08 * t * t
            if abs(x - 0.5) <= half:
                return True
        if y < 0.28 and (x - 0.5) ** 2 / 0.15 ** 2 + (y - 0.28) ** 2 / 0.1 ** 2 <= 1:
            return True
        if 0.64 <= y <= 0.70 and abs(x - 0.5) <= 0.26:
            return True
        return False
    return inside


def clapper():
    return circle(0.5, 0.745, 0.055)


def glyph_bell(bg):
    return [(circle(0.5, 0.5, 0.48), bg), (bell(), WHITE), (clapper(), WHITE)]


STATES = {
    # All updates servers connected.
    "tray-connected": glyph_bell(BLUE),
    # Some servers unreachable: amber disc with a small exclamation badge.
    "tray-degraded": glyph_bell(AMBER)
    + [(circle(0.79, 0.21, 0.2), WHITE), (rect(0.765, 0.10, 0.815, 0.25, 0.02), AMBER), (circle(0.79, 0.30, 0.03), AMBER)],
    # Offline: grey disc, bell struck through.
    # Offline: see offline_layers().
    # Unread changes or news: the normal icon with a red badge.
    "tray-unread": glyph_bell(BLUE) + [(circle(0.79, 0.21, 0.2), WHITE), (circle(0.79, 0.21, 0.16), RED)],
    # Paused: slate disc with pause bars instead of the bell.
    "tray-paused": [(circle(0.5, 0.5, 0.48), SLATE), (rect(0.34, 0.28, 0.45, 0.72, 0.03), WHITE), (rect(0.55, 0.28, 0.66, 0.72, 0.03), WHITE)],
}


def offline_layers():
    # The slash is drawn as a gap in the bell (background colour) with a white line beside it.
    base = glyph_bell(GRAY)
    def gap(x, y):
        d = ((x - 0.5) - (0.5 - y)) / math.sqrt(2)
        return -0.075 <= d <= 0.0 and (x - 0.5) ** 2 + (y - 0.5) ** 2 <= 0.36 ** 2
    def line(x, y):
        d = ((x - 0.5) - (0.5 - y)) / math.sqrt(2)
        return 0.0 < d <= 0.05 and (x - 0.5) ** 2 + (y - 0.5) ** 2 <= 0.36 ** 2
    return base + [(gap, GRAY), (line, WHITE)]


STATES["tray-offline"] = offline_layers()


def main():
    for name, layers in STATES.items():
        png(os.path.join(HERE, f"{name}.png"), 64, render(64, layers))
    app = glyph_bell(BLUE)
    for size, name in [(32, "32x32.png"), (128, "128x128.png"), (256, "icon.png")]:
        png(os.path.join(HERE, name), size, render(size, app))


if __name__ == "__main__":
    main()
