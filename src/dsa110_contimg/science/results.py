"""Columnar measurement results shared by every measurement method.

A :class:`MeasurementTable` holds one numpy array per column, one row per
requested position, in the order the positions were given. It converts to an
:class:`astropy.table.Table` and iterates as per-source records, so both

>>> table.to_table()                         # doctest: +SKIP
>>> [r.peak_jyb for r in table if r.success]  # doctest: +SKIP

work.

Conventions
-----------
* ``peak_jyb``, ``peak_err_jyb``, ``local_rms_jyb``: Jy/beam.
* ``x_pix``, ``y_pix``: 0-based pixel coordinates (numpy order is ``[y, x]``).
* A failed measurement has ``success=False``, NaN flux and error, and a
  non-zero failure bit in ``flags`` saying why; flux is never set to 0.
"""

from __future__ import annotations

import enum
from collections import namedtuple
from typing import Any, Iterator, Mapping

import numpy as np


class Flag(enum.IntFlag):
    """Per-measurement bit flags.

    Bits in :data:`FAILURE_FLAGS` make a measurement unusable (NaN flux,
    ``success=False``); the others are informational.
    """

    OFF_IMAGE = 1
    """The position falls outside the image."""
    NEAR_EDGE = 2
    """The cutout around the position is cut by the image edge."""
    BLANKED = 4
    """The pixel at the position is blanked (NaN) in the image."""
    NO_GOOD_PIXELS = 8
    """No pixel of the cutout has finite data, noise and kernel."""
    BAD_POSITION = 16
    """The sky position is not finite or does not project onto the image plane."""
    NO_NOISE = 32
    """No finite, positive noise estimate at the position."""
    CLUSTERED = 64
    """Fitted jointly with neighbours closer than ``cluster_threshold`` x BMAJ."""
    BIASED_PEAK = 128
    """Box-peak estimator: biased high, no background subtraction."""
    SINGLE_PLANE = 256
    """Adaptive binning asked for on a single-plane image: result equals ``forced``."""
    FIT_FAILED = 512
    """An external fitter (e.g. Aegean) returned no usable result."""
    QC_FAILED = 1024
    """The image failed quality control; kept out of normalisation and variability."""


FAILURE_FLAGS = (
    Flag.OFF_IMAGE | Flag.NEAR_EDGE | Flag.BLANKED | Flag.NO_GOOD_PIXELS
    | Flag.BAD_POSITION | Flag.NO_NOISE | Flag.FIT_FAILED
)


def describe_flags(flags: int) -> str:
    """Return the names of the bits set in ``flags``, joined by ``|`` ('' for 0)."""
    return "|".join(f.name for f in Flag if flags & f)


#: Columns every method returns, in this order.
CORE_COLUMNS: tuple[str, ...] = (
    "ra_deg", "dec_deg", "x_pix", "y_pix", "peak_jyb", "peak_err_jyb",
    "local_rms_jyb", "snr", "chi2", "dof", "cluster_id", "flags", "success",
)

_CORE_DTYPES = {
    "dof": np.int64, "cluster_id": np.int64, "flags": np.int64, "success": bool,
}


class MeasurementTable:
    """Column-oriented result of measuring many positions on one image.

    Parameters
    ----------
    columns : mapping of str to array-like
        Must contain every name in :data:`CORE_COLUMNS`; extra columns (for
        instance ``condon_err_jyb`` or per-method diagnostics) are kept.
        All columns have the same length.
    meta : mapping, optional
        Per-image facts: ``method``, ``image``, ``mjd``, ``freq_hz``,
        ``beam_deg`` (major, minor, pa), ``notes`` ...
    """

    __slots__ = ("columns", "meta", "_record_type")

    def __init__(self, columns: Mapping[str, Any], meta: Mapping[str, Any] | None = None):
        missing = [c for c in CORE_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"MeasurementTable is missing core columns {missing}")
        cols: dict[str, np.ndarray] = {}
        for name in list(CORE_COLUMNS) + [c for c in columns if c not in CORE_COLUMNS]:
            dtype = _CORE_DTYPES.get(name, np.float64 if name in CORE_COLUMNS else None)
            cols[name] = np.asarray(columns[name], dtype=dtype)
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise ValueError(f"MeasurementTable columns differ in length: {sorted(lengths)}")
        self.columns = cols
        self.meta = dict(meta or {})
        self._record_type = None

    # -- access -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.columns["ra_deg"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    @property
    def colnames(self) -> list[str]:
        return list(self.columns)

    @property
    def n_success(self) -> int:
        """Number of successful measurements."""
        return int(np.count_nonzero(self.columns["success"]))

    def __iter__(self) -> Iterator[Any]:
        if self._record_type is None:
            self._record_type = namedtuple("Measurement", self.colnames)
        rt = self._record_type
        lists = [col.tolist() for col in self.columns.values()]
        for row in zip(*lists):
            yield rt(*row)

    def __repr__(self) -> str:
        return (f"<MeasurementTable {len(self)} rows, {self.n_success} successful, "
                f"method={self.meta.get('method')!r}>")

    def to_table(self):
        """Return an :class:`astropy.table.Table` with units and ``meta``."""
        from astropy.table import Table
        import astropy.units as u

        t = Table({k: v for k, v in self.columns.items()}, meta=dict(self.meta))
        for name in t.colnames:
            if name.endswith("_jyb"):
                t[name].unit = u.Jy / u.beam
            elif name.endswith("_deg"):
                t[name].unit = u.deg
            elif name.endswith("_pix"):
                t[name].unit = u.pix
        t["flag_names"] = [describe_flags(int(f)) for f in self.columns["flags"]]
        return t

    def select(self, mask_or_index) -> "MeasurementTable":
        """A new table with the rows picked by a boolean mask or index array."""
        return MeasurementTable({k: v[mask_or_index] for k, v in self.columns.items()}, self.meta)
