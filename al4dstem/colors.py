"""One colour scheme for the three classes, everywhere: labeller (terminal and browser), the
sampling-pattern figure, the labelled positions on map figures, and optionally the maps.

Classes in their usual order (docs/design.md §1): 0 none, 1 vertical, 2 horizontal.

``scheme="class"`` (the default) is Paul Tol's "bright" cyan / yellow / red: the three stay
apart for people with deuteranopia, protanopia and tritanopia (smallest CIELAB distance ~37
under Machado et al.'s simulation, against ~22 for the paper's Fig. 7 blue / orange / pink),
all three are light enough to read on a dark terminal, and the hues stay close to Fig. 7's
(none light blue, vertical orange, horizontal pink). ``scheme="paper"`` is the paper's domain
map colours, R = none, G = vertical, B = horizontal (Fig. 5), kept for maps.

The current scan position is marked in white, which is no class colour and brighter than any
background the overview draws. Plain numpy, nothing that draws: the terminal, the browser and
matplotlib all read the same constants.
"""

from __future__ import annotations

import numpy as np

from al4dstem.errors import Al4dstemError

SCHEMES = ("class", "paper")
_RGB = {
    # Tol "bright": cyan #66CCEE, yellow #CCBB44, red #EE6677 (https://personal.sron.nl/~pault/)
    "class": ((0x66, 0xCC, 0xEE), (0xCC, 0xBB, 0x44), (0xEE, 0x66, 0x77)),
    "paper": ((255, 0, 0), (0, 255, 0), (0, 0, 255)),
}
CURRENT_RGB = (255, 255, 255)  # the position being labelled: not a class colour
SKIPPED_RGB = (153, 153, 153)  # skipped positions, where a figure shows them
INVALID_RGB = (0, 0, 0)  # map positions that could not be classified


def _check_scheme(scheme: str) -> str:
    if scheme not in _RGB:
        raise Al4dstemError(f"unknown colour scheme {scheme!r} (one of {', '.join(SCHEMES)})")
    return scheme


def class_rgb(scheme: str = "class") -> tuple[tuple[int, int, int], ...]:
    """The three class colours as ``(r, g, b)`` 0..255, in class order none, vertical, horizontal."""
    return _RGB[_check_scheme(scheme)]


def to_hex(rgb) -> str:
    """``(r, g, b)`` 0..255 -> ``"#rrggbb"``."""
    r, g, b = (int(v) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def class_hex(scheme: str = "class") -> tuple[str, ...]:
    """The class colours as ``"#rrggbb"`` strings (CSS, matplotlib, rich)."""
    return tuple(to_hex(c) for c in class_rgb(scheme))


CURRENT_HEX = to_hex(CURRENT_RGB)


def class_style(c: int, scheme: str = "class", bold: bool = False) -> str:
    """A rich style string for class ``c``: ``"#rrggbb"`` or ``"bold #rrggbb"``.

    Hex, because rich does not parse ``"rgb(1, 2, 3)"`` with spaces and silently drops it.
    """
    colour = class_hex(scheme)[int(c)]
    return f"bold {colour}" if bold else colour


def probabilities_rgb(probs, scheme: str = "paper") -> np.ndarray:
    """Probabilities ``(..., 3)`` -> uint8 ``(..., 3)``: each class colour weighted by its probability.

    With ``"paper"`` this is the paper's map: the probabilities themselves as R, G, B.
    Non-finite rows are not handled here (see ``al4dstem.maps.rgb_map``).
    """
    probs = np.clip(np.asarray(probs, dtype=np.float64), 0.0, 1.0)
    palette = np.asarray(class_rgb(scheme), dtype=np.float64)
    return np.rint(np.clip(probs @ palette, 0, 255)).astype(np.uint8)


# ---------------------------------------------------------------- checking the scheme

# Machado, Oliveira & Fernandes (2009), full severity, applied to linear RGB.
CVD_MATRICES = {
    "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413),
                     (-0.011820, 0.042940, 0.968881)),
    "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216),
                   (-0.003882, -0.048116, 1.051998)),
    "tritanopia": ((1.255528, -0.076749, -0.178779), (-0.078411, 0.930809, 0.147602),
                   (0.004733, 0.691367, 0.303900)),
}


def _linear(rgb) -> np.ndarray:
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _lab(linear: np.ndarray) -> np.ndarray:
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def seen_lab(rgb, vision: str = "normal") -> np.ndarray:
    """CIELAB of sRGB colours ``(..., 3)`` as seen with ``vision`` ("normal" or a ``CVD_MATRICES`` key)."""
    linear = _linear(rgb)
    if vision != "normal":
        linear = np.clip(linear @ np.asarray(CVD_MATRICES[vision]).T, 0.0, 1.0)
    return _lab(linear)


def min_distance(colours, vision: str = "normal") -> float:
    """Smallest CIELAB distance (delta E 1976) between any two of ``colours`` seen with ``vision``."""
    lab = seen_lab(np.asarray(colours, dtype=np.float64), vision)
    d = np.linalg.norm(lab[:, None] - lab[None], axis=-1)
    return float(d[np.triu_indices(len(lab), 1)].min())
