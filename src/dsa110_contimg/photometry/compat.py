"""Compatibility wrappers for the earlier pipeline's photometry triggers.

The seed's migration notes replace two entry points with the manager; these
keep their call shapes as thin wrappers:

* :func:`trigger_photometry_for_image` -- the streaming converter's per-image
  trigger (``args`` carries ``photometry_catalog``, ``photometry_radius``,
  ``photometry_max_sources``, ``photometry_normalize``);
* :class:`MosaicPhotometryMixin` -- gives a mosaic orchestrator the
  ``_trigger_photometry_for_mosaic()`` method (reading ``enable_photometry``,
  ``photometry_config``, ``products_db_path`` and ``data_registry_db_path`` from
  the orchestrator), and :func:`trigger_photometry_for_mosaic` for callers
  without such a class.

Both create a batch job and return its id. Unlike the earlier code they do not
swallow errors: a bad configuration or an unreadable database raises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from dsa110_contimg.core.config import PhotometryConfig
from dsa110_contimg.pipeline.manager import PhotometryManager


def trigger_photometry_for_image(image_path: str | Path, group_id: str | None = None, args: Any = None,
                                 products_db_path: str | Path = "state/products.sqlite3",
                                 data_registry_db_path: str | Path | None = None, *,
                                 data_id: str | None = None) -> int:
    """Queue photometry of one newly imaged FITS file (streaming converter hook).

    Parameters
    ----------
    image_path : Path
        The primary-beam-corrected image.
    group_id : str, optional
        Observation group id (kept with the job).
    args : namespace, optional
        The converter's parsed arguments; ``photometry_catalog`` (default
        ``nvss``), ``photometry_radius`` (0.5 deg), ``photometry_max_sources``,
        ``photometry_normalize`` (False) are read when present.
    products_db_path, data_registry_db_path : Path
    data_id : str, optional
        Registry id (default: the FITS stem).

    Returns
    -------
    int
        The batch job id.
    """
    config = PhotometryConfig(
        catalog=getattr(args, "photometry_catalog", "nvss"),
        radius_deg=getattr(args, "photometry_radius", 0.5),
        max_sources=getattr(args, "photometry_max_sources", None),
        method="peak",
        normalize=getattr(args, "photometry_normalize", False),
    )
    manager = PhotometryManager(products_db_path=products_db_path,
                                data_registry_db_path=data_registry_db_path, default_config=config)
    image_path = Path(image_path)
    result = manager.measure_for_fits(fits_path=image_path, create_batch_job=True,
                                      data_id=data_id or image_path.stem, group_id=group_id)
    return int(result.batch_job_id)


def trigger_photometry_for_mosaic(mosaic_path: str | Path, data_id: str, *,
                                  products_db_path: str | Path,
                                  data_registry_db_path: str | Path | None = None,
                                  photometry_config: Mapping[str, Any] | None = None) -> int:
    """Queue photometry of a new mosaic; returns the batch job id."""
    manager = PhotometryManager(products_db_path=products_db_path,
                                data_registry_db_path=data_registry_db_path,
                                default_config=PhotometryConfig.from_dict(photometry_config or {}))
    result = manager.measure_for_mosaic(mosaic_path=Path(mosaic_path), create_batch_job=True,
                                        data_id=data_id)
    return int(result.batch_job_id)


class MosaicPhotometryMixin:
    """Adds ``_trigger_photometry_for_mosaic`` to a mosaic orchestrator.

    The orchestrator provides ``enable_photometry`` (bool), ``photometry_config``
    (dict of :class:`PhotometryConfig` fields), ``products_db_path`` and
    ``data_registry_db_path``. The manager is built once and reused.
    """

    enable_photometry: bool = True
    photometry_config: Mapping[str, Any] | None = None
    products_db_path: str | Path
    data_registry_db_path: str | Path | None = None

    @property
    def photometry_manager(self) -> PhotometryManager:
        manager = getattr(self, "_photometry_manager", None)
        if manager is None:
            manager = PhotometryManager(
                products_db_path=self.products_db_path,
                data_registry_db_path=self.data_registry_db_path,
                default_config=PhotometryConfig.from_dict(self.photometry_config or {}))
            self._photometry_manager = manager
        return manager

    def _trigger_photometry_for_mosaic(self, mosaic_path: str | Path, mosaic_data_id: str) -> int | None:
        """Queue photometry for a finished mosaic; None when photometry is disabled."""
        if not self.enable_photometry:
            return None
        result = self.photometry_manager.measure_for_mosaic(
            mosaic_path=Path(mosaic_path), create_batch_job=True, data_id=mosaic_data_id)
        return int(result.batch_job_id)
