"""Calibrations of a 4D-STEM scan: the size of a scan step and of a detector pixel, the beam energy.

Kept as read from the file (``Axis`` per array axis: scale, offset, units, name), in the array
order of every ``Dataset``: ``(scan rows, scan cols, detector rows, detector cols)``. An axis whose
file gave no unit is uncalibrated (``units is None``: one step is one scan position or pixel).

Units are normalised at the edge (``"1 / nm"`` and ``"nm^-1"`` are ``1/nm``, ``"um"`` is ``µm``)
so that two scans can be compared: lengths in nm, reciprocal lengths in 1/nm, angles in mrad;
1/nm and mrad convert into each other through the beam energy (the electron wavelength).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# unit -> (kind, factor to the kind's base unit): nm for lengths, 1/nm for reciprocal lengths, mrad for angles
_UNITS = {
    "pm": ("length", 1e-3), "Å": ("length", 0.1), "nm": ("length", 1.0), "µm": ("length", 1e3),
    "mm": ("length", 1e6), "cm": ("length", 1e7), "m": ("length", 1e9),
    "1/pm": ("reciprocal", 1e3), "1/Å": ("reciprocal", 10.0), "1/nm": ("reciprocal", 1.0),
    "1/µm": ("reciprocal", 1e-3), "1/m": ("reciprocal", 1e-9),
    "µrad": ("angle", 1e-3), "mrad": ("angle", 1.0), "rad": ("angle", 1e3), "deg": ("angle", 1e3 * math.pi / 180),
}
_SPELLINGS = {"um": "µm", "μm": "µm", "micron": "µm", "A": "Å", "angstrom": "Å", "Angstrom": "Å", "ang": "Å",
              "urad": "µrad", "μrad": "µrad", "degree": "deg", "degrees": "deg", "°": "deg", "meter": "m"}
_UNCALIBRATED = {"", "<undefined>", "undefined", "none", "px", "pixel", "pixels", "1", "a.u.", "au"}
BASE_UNITS = {"length": "nm", "reciprocal": "1/nm", "angle": "mrad"}


def normalise_unit(units) -> str | None:
    """A unit as al4dstem writes it (``1/nm``, ``µm``, ``mrad``, ...), or None for no unit.

    Unknown units are kept as given: they are shown, but never compared with another unit.
    """
    if units is None:
        return None
    text = str(units).strip()
    if text.lower() in _UNCALIBRATED:
        return None
    compact = text.replace(" ", "")
    for suffix in ("^-1", "⁻¹", "-1"):  # nm^-1, nm⁻¹, nm-1: 1/nm
        if compact.endswith(suffix) and not compact.startswith("1/"):
            compact = "1/" + compact[: -len(suffix)]
            break
    if compact.startswith("1/"):
        inner = compact[2:]
        return "1/" + _SPELLINGS.get(inner, inner)
    return _SPELLINGS.get(compact, compact)


def unit_kind(units: str | None) -> str | None:
    """``length``, ``reciprocal``, ``angle`` or None (no unit, or one al4dstem does not convert)."""
    return _UNITS.get(units, (None, 0))[0] if units else None


def electron_wavelength_nm(energy_kev: float) -> float:
    """Relativistic electron wavelength in nm at ``energy_kev`` (200 keV: 0.002508 nm)."""
    volts = energy_kev * 1e3
    return 1.2264262862 / math.sqrt(volts * (1 + 0.978475562e-6 * volts))


@dataclass(frozen=True)
class Axis:
    """One array axis: position ``i`` is at ``offset + i * scale`` in ``units`` (None: not calibrated)."""

    scale: float = 1.0
    offset: float = 0.0
    units: str | None = None
    name: str = ""

    @property
    def calibrated(self) -> bool:
        return self.units is not None

    def in_base_units(self, beam_energy_kev: float | None = None, kind: str | None = None) -> float | None:
        """The step in the base unit of ``kind`` (its own kind by default): nm, 1/nm or mrad; 1/nm and
        mrad convert into each other with the beam energy. None when it cannot be expressed so."""
        own = unit_kind(self.units)
        if own is None:
            return None
        value = self.scale * _UNITS[self.units][1]
        kind = kind or own
        if kind == own:
            return value
        if beam_energy_kev and {own, kind} == {"reciprocal", "angle"}:
            wavelength = electron_wavelength_nm(beam_energy_kev)  # angle (rad) = wavelength x spatial frequency
            return value * wavelength * 1e3 if own == "reciprocal" else value / (wavelength * 1e3)
        return None

    def to_dict(self) -> dict:
        return {"scale": float(self.scale), "offset": float(self.offset), "units": self.units or "", "name": self.name}

    @classmethod
    def from_dict(cls, d: dict) -> Axis:
        return cls(_finite(d.get("scale"), 1.0), _finite(d.get("offset"), 0.0), normalise_unit(d.get("units")),
                   str(d.get("name") or ""))


def _finite(value, default: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


UNCALIBRATED = (Axis(name="y"), Axis(name="x"), Axis(name="qy"), Axis(name="qx"))


@dataclass(frozen=True)
class Calibration:
    """The four axes ``(scan rows, scan cols, detector rows, detector cols)`` and the beam energy (keV)."""

    axes: tuple[Axis, Axis, Axis, Axis] = UNCALIBRATED
    beam_energy_kev: float | None = None
    extra: dict = field(default_factory=dict, compare=False)  # e.g. camera length, as the file gives it

    @property
    def scan(self) -> tuple[Axis, Axis]:
        return self.axes[0], self.axes[1]

    @property
    def detector(self) -> tuple[Axis, Axis]:
        return self.axes[2], self.axes[3]

    @property
    def calibrated(self) -> bool:
        return any(a.calibrated for a in self.axes) or self.beam_energy_kev is not None

    # ------------------------------------------------------------------ for people
    def describe(self) -> list[tuple[str, str]]:
        """``(key, value)`` lines for ``al4dstem info``."""
        lines = [("scan step", _pair(self.scan, "rows", "cols", "not calibrated (1 step = 1 position)")),
                 ("pixel size", _pair(self.detector, "rows", "cols", "not calibrated (detector pixels)"))]
        beam = f"{self.beam_energy_kev:g} keV" if self.beam_energy_kev else "not recorded"
        if self.beam_energy_kev and unit_kind(self.detector[0].units) in ("reciprocal", "angle"):
            other = "angle" if unit_kind(self.detector[0].units) == "reciprocal" else "reciprocal"
            step = self.detector[0].in_base_units(self.beam_energy_kev, other)
            beam += f" (wavelength {electron_wavelength_nm(self.beam_energy_kev) * 1e3:.3f} pm; a pixel is " \
                    f"{step:.4g} {BASE_UNITS[other]})"
        lines.append(("beam", beam))
        for key, value in self.extra.items():
            lines.append((key, str(value)))
        return lines

    # ------------------------------------------------------------------ comparisons
    def differences(self, other: Calibration, rtol: float = 0.02) -> list[str]:
        """What makes the patterns of ``other`` differ from these beyond ``rtol``: the detector pixel
        size (in 1/nm or mrad, converted through the beam energy when needed) and the beam energy.

        Only what both sides record is compared: an uncalibrated side differs from nothing. The scan
        step is not compared: a pattern does not depend on where the next one was taken.
        """
        found = []
        if self.beam_energy_kev and other.beam_energy_kev and not _close(self.beam_energy_kev,
                                                                         other.beam_energy_kev, rtol):
            found.append(f"beam energy {other.beam_energy_kev:g} keV, not {self.beam_energy_kev:g} keV")
        mine, theirs = self.detector[0], other.detector[0]
        kind = unit_kind(mine.units)
        if kind is not None and unit_kind(theirs.units) is not None:
            a = mine.in_base_units(self.beam_energy_kev)
            b = theirs.in_base_units(other.beam_energy_kev, kind)
            if b is not None and not _close(a, b, rtol):
                found.append(f"detector pixel {theirs.scale:.4g} {theirs.units}, not {mine.scale:.4g} {mine.units}")
            elif b is None and unit_kind(theirs.units) != kind:
                found.append(f"detector pixel in {theirs.units}, not comparable with {mine.units} "
                             f"(no beam energy to convert)")
        elif mine.units is not None and theirs.units is not None and mine.units == theirs.units:
            if not _close(mine.scale, theirs.scale, rtol):
                found.append(f"detector pixel {theirs.scale:.4g} {theirs.units}, not {mine.scale:.4g} {mine.units}")
        return found

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict:
        """Plain data (checkpoints, exported metadata)."""
        out = {"axes": [a.to_dict() for a in self.axes], "beam_energy_kev": self.beam_energy_kev}
        if self.extra:
            out["extra"] = {str(k): str(v) for k, v in self.extra.items()}
        return out

    @classmethod
    def from_dict(cls, d: dict | None) -> Calibration:
        if not isinstance(d, dict):
            return cls()
        axes = d.get("axes")
        if not isinstance(axes, (list, tuple)) or len(axes) != 4 or not all(isinstance(a, dict) for a in axes):
            return cls()
        energy = d.get("beam_energy_kev")
        energy = _finite(energy, 0.0) or None
        extra = d.get("extra") if isinstance(d.get("extra"), dict) else {}
        return cls(tuple(Axis.from_dict(a) for a in axes), energy, dict(extra))

    @classmethod
    def from_rsciio(cls, axes: list[dict], metadata: dict | None = None, beam_energy_kev: float | None = None,
                    extra: dict | None = None) -> Calibration:
        """From a rosettasciio signal dictionary's ``axes`` (array order) of a 4-D signal, and its metadata."""
        ordered = sorted(axes, key=lambda a: a.get("index_in_array", 0)) if all(
            "index_in_array" in a for a in axes) else list(axes)
        if len(ordered) != 4:
            return cls(beam_energy_kev=beam_energy_kev)
        names = ("y", "x", "qy", "qx")
        made = tuple(Axis(_finite(a.get("scale"), 1.0), _finite(a.get("offset"), 0.0), normalise_unit(a.get("units")),
                          str(a.get("name") or names[i])) for i, a in enumerate(ordered))
        if beam_energy_kev is None:
            beam_energy_kev = beam_energy_from_metadata(metadata)
        return cls(made, beam_energy_kev, dict(extra or {}))

    def with_scan_axes(self, rows: Axis, cols: Axis) -> Calibration:
        return Calibration((rows, cols, *self.detector), self.beam_energy_kev, dict(self.extra))


def beam_energy_from_metadata(metadata: dict | None) -> float | None:
    """``Acquisition_instrument.TEM.beam_energy`` (keV) of a hyperspy metadata tree, if any."""
    try:
        value = metadata["Acquisition_instrument"]["TEM"]["beam_energy"]
    except (KeyError, TypeError):
        return None
    v = _finite(value, 0.0)
    return v if v > 0 else None


def _close(a: float, b: float, rtol: float) -> bool:
    return abs(a - b) <= rtol * max(abs(a), abs(b))


def _pair(axes: tuple[Axis, Axis], first: str, second: str, none: str) -> str:
    a, b = axes
    if not a.calibrated and not b.calibrated:
        return none
    if a.units == b.units and math.isclose(a.scale, b.scale, rel_tol=1e-9):
        return f"{a.scale:.6g} {a.units}"
    return f"{a.scale:.6g} {a.units or 'px'} ({first}) x {b.scale:.6g} {b.units or 'px'} ({second})"
