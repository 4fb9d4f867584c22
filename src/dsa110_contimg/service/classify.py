"""Which FITS files the daemon measures, and which it records as skipped.

The suffix table follows the three naming conventions of the DSA-110 pipeline
(``dsa110.md`` section 2): WSClean (``<root>-image.fits``,
``-image-pb.fits``, ``-residual``/``-psf``/``-model``/``-dirty``, ``-MFS-*``,
``*beam*``), CASA tclean exports (``.image.fits``, ``.pbcor.fits``, ``.pb.fits``,
``.residual.fits``, ...), per-SPW imaging (``-image-pbcor.fits``), the GPU
dirty imager (``.dirty.fits``), BANE maps (``_rms``/``_bkg``) and the mosaic
builder (``<name>.fits`` + ``<name>.weights.fits``).

Rules:

* the **primary-beam-corrected** image is the science product; a restored image
  without PB correction is measured only when no PB-corrected sibling exists
  (the daemon waits ``pbcor_wait_s`` for one to appear);
* residual, PSF, model, dirty, beam, weights, mask, sumwt, BANE maps, hidden
  and temporary files are recorded as skipped with the reason;
* a file is a mosaic when it lies under a mosaic directory, or its header has a
  mosaic keyword (``NIMAGES``; :func:`header_kind`, the rule the manager also uses).
  A beamless file in an image directory is an *image*: its job fails with a clear
  reason unless ``beam_arcsec`` is configured (never silently measured with ``peak``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dsa110_contimg.core.enums import header_is_mosaic, is_fits_name

#: Roles of a file name.
ROLES = ("pbcor", "restored", "other", "skip")


@dataclass(frozen=True)
class NameClass:
    """The classification of a file name.

    Attributes
    ----------
    role : str
        ``pbcor`` (PB-corrected science image), ``restored`` (image without PB
        correction: measured only without a PB-corrected sibling), ``other``
        (an unrecognised FITS name, e.g. a mosaic: measured), ``skip``.
    reason : str
        Why (for ``skip``: recorded in the ``files`` table).
    pb_siblings : tuple of str
        For ``restored``: file names of the PB-corrected products that would
        replace it, in the same directory.
    """

    role: str
    reason: str
    pb_siblings: tuple[str, ...] = ()

    @property
    def measured(self) -> bool:
        return self.role != "skip"


# (regex on the lower-cased name, role, reason, sibling templates from the match's root)
_TABLE: list[tuple[re.Pattern, str, str, tuple[str, ...]]] = [
    # temporary / partial writes first
    (re.compile(r".*\.(part|tmp|partial|swp)$"), "skip", "temporary file (still being written)", ()),
    (re.compile(r"^(?P<root>.+)\.(part|tmp)\.fits$"), "skip", "temporary file (still being written)", ()),
    # BANE maps and mosaic weight maps
    (re.compile(r".*_(rms|bkg)\.fits$"), "skip", "BANE background/noise map", ()),
    (re.compile(r".*[.\-_]weights?\.fits$"), "skip", "weight map", ()),
    (re.compile(r".*-\d{4}-(image|image-pb|image-pbcor)\.fits$"), "skip",
     "WSClean per-channel image (the MFS image is measured)", ()),
    # WSClean PB-corrected (incl. per-SPW -image-pbcor)
    (re.compile(r"^(?P<root>.+)-image-pb(cor)?\.fits$"), "pbcor", "WSClean primary-beam-corrected image", ()),
    # WSClean other products
    (re.compile(r".*-(residual|residual-pb)\.fits$"), "skip", "WSClean residual image", ()),
    (re.compile(r".*-psf(-pb)?\.fits$"), "skip", "WSClean PSF", ()),
    (re.compile(r".*-model(-pb)?\.fits$"), "skip", "WSClean clean-component model", ()),
    (re.compile(r".*-dirty(-pb)?\.fits$"), "skip", "WSClean dirty image", ()),
    (re.compile(r"^(?P<root>.+)-image\.fits$"), "restored",
     "WSClean restored image (not primary-beam corrected)",
     ("{root}-image-pb.fits", "{root}-image-pbcor.fits")),
    # CASA tclean exports
    (re.compile(r"^(?P<root>.+)\.(image\.)?pbcor\.fits$"), "pbcor", "tclean primary-beam-corrected image", ()),
    (re.compile(r".*\.pb\.fits$"), "skip", "tclean primary-beam response", ()),
    (re.compile(r".*\.residual\.fits$"), "skip", "tclean residual image", ()),
    (re.compile(r".*\.model\.fits$"), "skip", "tclean clean-component model", ()),
    (re.compile(r".*\.psf\.fits$"), "skip", "tclean PSF", ()),
    (re.compile(r".*\.(sumwt|mask|weight)\.fits$"), "skip", "tclean auxiliary product", ()),
    (re.compile(r"^(?P<root>.+)\.image\.fits$"), "restored",
     "tclean restored image (not primary-beam corrected)",
     ("{root}.pbcor.fits", "{root}.image.pbcor.fits")),
    # GPU dirty imager: no CRVAL/BMAJ, unusable
    (re.compile(r".*\.dirty\.fits$"), "skip", "dirty image (GPU imager; no beam, unusable)", ()),
    # anything mentioning a beam or a mask
    (re.compile(r".*beam.*\.fits$"), "skip", "primary-beam file", ()),
    (re.compile(r".*[.\-_]mask\.fits$"), "skip", "mask", ()),
]


def classify_name(path: str | Path) -> NameClass:
    """Classify a file by its name alone (no I/O).

    Names are matched case-insensitively; sibling names keep the original case
    of the root.
    """
    name = Path(path).name
    if name.startswith("."):
        return NameClass("skip", "hidden file (temporary or canary)")
    lower = name.lower()
    if not is_fits_name(lower):
        return NameClass("skip", "not a FITS file name")
    for pattern, role, reason, siblings in _TABLE:
        m = pattern.match(lower)
        if m is None:
            continue
        sib: tuple[str, ...] = ()
        if siblings:
            root = name[:len(m.group("root"))]
            sib = tuple(s.format(root=root) for s in siblings)
        return NameClass(role, reason, sib)
    return NameClass("other", "FITS image")


def pb_sibling(path: str | Path) -> Path | None:
    """The existing PB-corrected sibling of a restored image, if any."""
    path = Path(path)
    for name in classify_name(path).pb_siblings:
        candidate = path.with_name(name)
        if candidate.exists():
            return candidate
    return None


def restored_counterparts(path: str | Path) -> tuple[Path, ...]:
    """For a PB-corrected image, the restored images it supersedes (may not exist)."""
    path = Path(path)
    name = path.name
    lower = name.lower()
    out = []
    for suffix, repl in (("-image-pb.fits", "-image.fits"), ("-image-pbcor.fits", "-image.fits"),
                         (".image.pbcor.fits", ".image.fits"), (".pbcor.fits", ".image.fits")):
        if lower.endswith(suffix):
            out.append(path.with_name(name[:-len(suffix)] + repl))
            break
    return tuple(out)


def header_kind(header) -> str:
    """``mosaic`` when the header has a mosaic keyword (``NIMAGES``), else ``image``
    (:func:`dsa110_contimg.core.enums.header_is_mosaic`)."""
    return "mosaic" if header_is_mosaic(header) else "image"


def file_kind(path, header, mosaic_roots) -> str:
    """The one mosaic rule: under a mosaic directory, or a mosaic header keyword. A file
    whose header could not be read (``header`` None) is an ``image``: its job fails with
    the reason."""
    if under_any(path, mosaic_roots):
        return "mosaic"
    return "image" if header is None else header_kind(header)


def under_any(path: str | Path, roots) -> bool:
    """True when ``path`` lies under one of ``roots``."""
    p = Path(path)
    for root in roots:
        try:
            p.relative_to(root)
            return True
        except ValueError:
            continue
    return False
