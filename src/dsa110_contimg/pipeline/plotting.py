"""Light-curve figures (matplotlib, non-interactive Agg backend) and the stored ESE
template they draw (:func:`stored_ese_fit`, also drawn by the web site)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dsa110_contimg.core.errors import PhotometryError
from dsa110_contimg.store.lightcurves import detection_sigma

#: Plot formats offered, by file suffix (each only where matplotlib writes it: :func:`plot_suffixes`).
PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def plot_suffixes() -> tuple[str, ...]:
    """The suffixes of :data:`PLOT_SUFFIXES` matplotlib's Agg canvas can write here
    (none without matplotlib)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        return ()
    supported = FigureCanvasAgg.get_supported_filetypes()
    return tuple(s for s in PLOT_SUFFIXES if s[1:] in supported)


def stored_ese_fit(candidate: dict | None):
    """The ESE template the shape search fitted when ``candidate`` (a row of
    ``ese list``) was evaluated, as an :class:`~dsa110_contimg.science.ese.ESEFit` whose
    ``model(mjd)`` gives Jy/beam; None when the candidate has no detected shape or no
    stored template (evaluated before the template's baseline was stored).

    Drawing from stored parameters keeps a plot equal to what the pipeline decided and
    costs no fit.
    """
    from dsa110_contimg.science.ese import ESEFit

    if not candidate or "shape" not in (candidate.get("criteria") or []):
        return None
    values = {k: candidate.get(k) for k in ("depth", "duration_days", "t_min_mjd", "baseline_jyb")}
    if any(v is None or not np.isfinite(v) for v in values.values()) or not candidate.get("template"):
        return None
    nan = float("nan")
    return ESEFit(depth=float(values["depth"]), duration_days=float(values["duration_days"]),
                  t_min_mjd=float(values["t_min_mjd"]),
                  significance=float(detection_sigma(candidate) or nan),
                  template=str(candidate["template"]), chi2_improvement=nan,
                  baseline=float(values["baseline_jyb"]),
                  caustic_amp=float(candidate.get("caustic_amp") or 0.0),
                  chi2_nu_fit=nan, detected=True)


def plot_lightcurve(lc: dict, path: str | Path, *, title: str, ese_fit=None,
                    baseline_epochs: int = 10, candidate: dict | None = None) -> Path:
    """Write one source's light curve as a PNG, PDF or SVG (by ``path``'s suffix).

    Parameters
    ----------
    lc : dict of arrays
        From :func:`dsa110_contimg.store.lightcurves.source_lightcurve`: ``mjd``,
        ``peak_jyb``, ``peak_err_jyb``, ``norm_flux_jyb``, ``norm_err_jyb``,
        ``success``, ``qc_status``, ``used_as_reference``.
    path : Path
        Output file; its suffix (one of :func:`plot_suffixes`) gives the format.
    title : str
    ese_fit : ESEFit, optional
        The ESE template fitted to the series (:func:`stored_ese_fit`); drawn when it
        has a fit.
    baseline_epochs : int
        The first epochs (reference baseline window, ``norm_baseline_epochs`` of the
        deployment's configuration) are shaded and the legend says how many.
    candidate : dict, optional
        The source's stored ESE candidate (a row of ``ese list``): the legend quotes
        its score and shape significance, the same numbers ``ese list`` prints.

    Panels: raw and normalised flux density (mJy/beam) with 1-sigma errors
    against MJD; epochs whose image failed QC are drawn hollow; epochs where
    the source served as a normalisation reference are marked with a star.
    """
    try:
        import matplotlib
    except ImportError:
        raise PhotometryError("plotting needs matplotlib (pip install 'dsa110-contimg-photometry[plot]'); "
                                "write a table instead (-o x.csv)") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mjd = lc["mjd"]
    ok = lc["success"] & np.isfinite(mjd)
    qc_bad = np.array([s == "failed" for s in lc["qc_status"]], bool)
    fig, ax = plt.subplots(figsize=(9, 4.8), constrained_layout=True)
    good = ok & ~qc_bad
    ax.errorbar(mjd[good], 1e3 * lc["peak_jyb"][good], 1e3 * lc["peak_err_jyb"][good], fmt="o",
                ms=4, color="0.6", label="raw")
    if np.any(ok & qc_bad):
        ax.errorbar(mjd[ok & qc_bad], 1e3 * lc["peak_jyb"][ok & qc_bad],
                    1e3 * lc["peak_err_jyb"][ok & qc_bad], fmt="o", mfc="none", color="0.6",
                    label="raw, image failed QC")
    norm = ok & np.isfinite(lc["norm_flux_jyb"])
    if np.any(norm):
        ax.errorbar(mjd[norm], 1e3 * lc["norm_flux_jyb"][norm], 1e3 * lc["norm_err_jyb"][norm], fmt="s",
                    ms=4, color="C0", label="normalised")
    ref = norm & lc["used_as_reference"]
    if np.any(ref):
        ax.plot(mjd[ref], 1e3 * lc["norm_flux_jyb"][ref], "*", ms=10, color="C2",
                label="used as reference")
    finite_mjd = np.sort(mjd[np.isfinite(mjd)])
    if finite_mjd.size:
        end = finite_mjd[min(baseline_epochs, finite_mjd.size) - 1]
        ax.axvspan(finite_mjd[0] - 0.5, end + 0.5, color="C2", alpha=0.08,
                   label=f"baseline epochs (first {baseline_epochs})")
    if ese_fit is not None and ese_fit.template != "none" and finite_mjd.size:
        grid = np.linspace(finite_mjd[0], finite_mjd[-1], 600)
        ax.plot(grid, 1e3 * ese_fit.model(grid), "-", color="C3",
                label=ese_label(ese_fit, candidate))
    elif candidate is not None:
        ax.plot([], [], " ", label=ese_label(None, candidate))
    ax.set_xlabel("MJD")
    ax.set_ylabel("peak flux density (mJy/beam)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_title(title: str, candidate: dict | None) -> str:
    """The plot's title: ``title`` with the ESE candidate's id and detection significance
    (``sigma``, as ``ese list`` prints it) when the source is a candidate."""
    if candidate is None:
        return title
    sig = detection_sigma(candidate)
    return f"{title}\nESE candidate #{candidate.get('id')}, sigma " + \
        ("-" if sig is None else f"{sig:.1f}")


def ese_label(ese_fit, candidate: dict | None) -> str:
    """Legend text of the ESE overlay: the stored candidate's numbers (as ``ese list``
    prints them) when there is a candidate, else the fit's own."""
    if candidate is not None:
        sig = detection_sigma(candidate)
        depth = candidate.get("depth")
        days = candidate.get("duration_days")
        parts = [f"ESE candidate #{candidate.get('id')}: score {float(candidate.get('score') or 0):.1f}"]
        if sig is not None:
            parts.append(f"sigma {sig:.1f}")
        if depth is not None and np.isfinite(depth):
            parts.append(f"depth {float(depth):.0%}")
        if days is not None and np.isfinite(days):
            parts.append(f"{float(days):.0f} d")
        return ", ".join(parts)
    return (f"ESE template ({ese_fit.template}): depth {ese_fit.depth:.0%}, "
            f"{ese_fit.duration_days:.0f} d, sigma {ese_fit.significance:.1f}")
