"""Labels gathered over several scans, and scans that must match the model's detector.

A label file may carry a ``scan`` column naming, on each row, the scan the position belongs to
(a path, a file name, or a file name without its extension). ``al4dstem train A.mib B.mib
--labels labels.csv`` then learns from the labelled patterns of both scans; rows naming a scan
that is not given are left out (and counted). Without a ``scan`` column every row belongs to
the one DATA given.

Scans trained on together, or mapped by a model, must have the same detector shape; their
calibrations (detector pixel size, beam energy) must agree within ``CALIBRATION_RTOL`` unless
``--allow-other-calibration`` says otherwise: a pattern twice as magnified is another pattern
to a network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from al4dstem.data.calibration import Calibration
from al4dstem.errors import Al4dstemError

CALIBRATION_RTOL = 0.02
SCAN_COLUMN = "scan"


@dataclass
class LabelledScans:
    """What ``gather_labels`` found: the model's inputs and classes, and what was used."""

    inputs: np.ndarray  # (n, 2) positions (x, y) of the one scan, or (n, det_rows, det_cols) patterns
    classes: np.ndarray  # (n,)
    used: list[tuple] = field(default_factory=list)  # (scan, x, y, class) of every label used
    rows: list = field(default_factory=list)  # every row of the file (provenance counts them)
    left_out: int = 0  # labels of scans not given
    per_scan: list[int] = field(default_factory=list)  # labels used per DATA


def _raw_rows(path: Path) -> list:
    """Every row of a label file, parsed but not yet checked against a scan (a position may carry
    different labels in two scans)."""
    from al4dstem.labels import read_label_rows

    return read_label_rows(path)


def scan_index(value: str, data: list[str], labels_path: Path | None = None) -> int | None:
    """Which of ``data`` a ``scan`` value names: the same path (as given, or relative to the label
    file's folder), the same file name, or the same name without extension; None when none does."""
    value = value.strip()
    if not value:
        return None
    for i, d in enumerate(data):
        if value == d:
            return i
    places = [Path(value)]
    if labels_path is not None and not os.path.isabs(value):
        places.append(Path(labels_path).parent / value)
    for i, d in enumerate(data):
        for p in places:
            if p.exists() and Path(d).exists() and os.path.samefile(p, d):
                return i
    by_name = [i for i, d in enumerate(data) if value in (Path(d).name, Path(d).stem)]
    if len(by_name) > 1:
        names = ", ".join(data[i] for i in by_name)
        raise Al4dstemError(f"scan {value!r} names several of the DATA given ({names}): use paths in the scan column")
    return by_name[0] if by_name else None


def gather_labels(labels_path, data: list[str], datasets: list) -> LabelledScans:
    """The labelled inputs of ``datasets`` (opened from ``data``) in the label file."""
    from al4dstem.labels import as_arrays, validate_labels

    labels_path = Path(labels_path)
    rows = _raw_rows(labels_path)
    with_scan = [r for r in rows if r.extra.get(SCAN_COLUMN, "").strip()]
    if not with_scan:
        if len(datasets) > 1:
            raise Al4dstemError(f"{labels_path}: no scan column: with several DATA, each label row names its scan "
                                f"(a '{SCAN_COLUMN}' column holding the file's path or name)")
        live = validate_labels(rows, labels_path, datasets[0].scan_shape)
        positions, classes = as_arrays(live)
        used = [("", int(x), int(y), int(c)) for (x, y), c in zip(positions, classes, strict=True)]
        return LabelledScans(positions, classes, used, rows, 0, [len(classes)])
    groups: list[list] = [[] for _ in datasets]
    left_out = 0
    for r in rows:
        value = r.extra.get(SCAN_COLUMN, "").strip()
        if not value:
            if len(datasets) > 1:
                raise Al4dstemError(f"{labels_path}:{r.line}: no scan named on this row: with several DATA, each "
                                    f"label row names its scan")
            groups[0].append(r)
            continue
        try:
            i = scan_index(value, data, labels_path)
        except Al4dstemError as e:
            raise Al4dstemError(f"{labels_path}:{r.line}: {e}") from None
        if i is None:
            left_out += 1
        else:
            groups[i].append(r)
    parts, used, per_scan = [], [], []
    for i, (ds, group) in enumerate(zip(datasets, groups, strict=True)):
        positions, cls = as_arrays(validate_labels(group, labels_path, ds.scan_shape))
        per_scan.append(len(cls))
        used += [(data[i], int(x), int(y), int(c)) for (x, y), c in zip(positions, cls, strict=True)]
        if len(cls):
            parts.append((ds, positions, cls))
    if not parts:
        return LabelledScans(np.zeros((0, 2), np.int64), np.zeros(0, np.int64), used, rows, left_out, per_scan)
    classes = np.concatenate([cls for _, _, cls in parts])
    if len(datasets) == 1:  # one scan: positions, so the classifier reads the patterns itself
        return LabelledScans(parts[0][1], classes, used, rows, left_out, per_scan)
    patterns = np.concatenate([ds.get(positions) for ds, positions, _ in parts])
    return LabelledScans(patterns, classes, used, rows, left_out, per_scan)


def check_same_detector(datasets: list, allow_other_calibration: bool = False) -> None:
    """Scans trained on together: one detector shape, and calibrations that agree (unless allowed)."""
    first = datasets[0]
    for ds in datasets[1:]:
        if ds.detector_shape != first.detector_shape:
            raise Al4dstemError(f"{ds.source} has {ds.detector_shape[0]} x {ds.detector_shape[1]} patterns but "
                                f"{first.source} {first.detector_shape[0]} x {first.detector_shape[1]}: a model "
                                f"learns one detector size")
        if not allow_other_calibration:
            check_calibration(first.calibration, ds, first.source)


def check_calibration(reference: Calibration, ds, reference_name: str, what: str = "") -> None:
    """Refuse ``ds`` when its calibration differs from ``reference`` beyond ``CALIBRATION_RTOL``."""
    found = reference.differences(ds.calibration, CALIBRATION_RTOL)
    if found:
        raise Al4dstemError(f"{ds.source}: {found[0]}, unlike {what}{reference_name}; use it anyway with "
                            f"--allow-other-calibration")
