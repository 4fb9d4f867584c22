"""``images list|show``, the ``status`` reason summary and ``jobs show`` links: why an image
was (not) normalised, on the command line."""

from __future__ import annotations

import json

import numpy as np
from astropy.table import Table

from dsa110_contimg.cli.main import main
from dsa110_contimg.service.config import render_config


def _deployment(tmp_path, sim_field, photometry=None, resolved=True):
    """A config written by render_config (init's defaults) over the simulated field, whose
    catalogue says every source is resolved (measured deconvolved size 40", beam 15"; else
    no sizes: compactness unknown)."""
    root = tmp_path / "deploy"          # (the fixture's own catalogue is in tmp_path/catalogs)
    root.mkdir()
    conf = root / "photometry.toml"
    conf.write_text(render_config(root, photometry=photometry))
    (tmp_path / "images").mkdir(exist_ok=True)
    t = Table.read(sim_field.csv_path)
    n = len(t)
    if resolved:
        t["MajAxis"] = np.full(n, 40.0)
        t["MinAxis"] = np.full(n, 30.0)
        t["l_MajAxis"] = np.full(n, " ")
    resolved = tmp_path / "nvss_resolved.csv"
    t.write(resolved, overwrite=True)
    assert main(["catalog", "ingest", "nvss", str(resolved), "--config", str(conf)]) == 0
    return conf


def test_images_show_and_status_say_why_an_image_was_not_normalised(sim_field, tmp_path, capsys):
    conf = _deployment(tmp_path, sim_field)
    for k in range(2):
        sim_field.image(tmp_path / "images" / f"e{k}.img-image-pb.fits", mjd=60676.0 + k, seed=k)
        assert main(["measure", str(tmp_path / "images" / f"e{k}.img-image-pb.fits"),
                     "--catalog", "nvss", "--config", str(conf)]) == 0
    capsys.readouterr()
    assert main(["images", "list", "--config", str(conf)]) == 0
    out = capsys.readouterr().out
    assert out.count("NOT normalised: too few references (compact-source test)") == 2
    assert main(["images", "show", "e1.img-image-pb.fits", "--config", str(conf)]) == 0
    out = capsys.readouterr().out
    assert "normalisation: failed" in out
    assert "reason: too few references (compact-source test): 0 usable of" in out
    assert "rejected: resolved: deconvolved size 40.0 arcsec > 15.0 arcsec" in out
    assert main(["images", "show", "1", "--json", "--config", str(conf)]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert detail["norm_status"] == "failed" and detail["norm_method"] == "catalogue"
    assert detail["references"] and not any(r["chosen"] for r in detail["references"])
    assert all(r["compactness"] == "resolved" for r in detail["references"])
    main(["status", "--config", str(conf)])
    out = capsys.readouterr().out
    assert "2 images not normalised: too few references (compact-source test)" in out
    main(["status", "--json", "--config", str(conf)])
    st = json.loads(capsys.readouterr().out)
    assert st["normalisation"]["reasons"] == [
        {"reason": "too few references (compact-source test)", "images": 2}]
    assert st["science"] == {"normalize": True, "detect_ese": True, "warnings": []}
    assert main(["images", "show", "nope.fits", "--config", str(conf)]) == 1


def test_status_warns_when_science_is_off(sim_field, tmp_path, capsys):
    conf = _deployment(tmp_path, sim_field, photometry={"normalize": False, "detect_ese": False})
    sim_field.image(tmp_path / "images" / "e0.img-image-pb.fits")
    assert main(["measure", str(tmp_path / "images" / "e0.img-image-pb.fits"), "--catalog", "nvss",
                 "--config", str(conf)]) == 0
    capsys.readouterr()
    main(["status", "--config", str(conf)])
    out = capsys.readouterr().out
    assert "normalisation is OFF" in out and "ESE detection is OFF" in out
    assert "1 image(s) measured with normalisation off" in out


def test_jobs_show_links_to_the_image_outcome(sim_field, tmp_path, capsys):
    conf = _deployment(tmp_path, sim_field)
    img = tmp_path / "images" / "e0.img-image-pb.fits"
    sim_field.image(img)
    assert main(["measure", str(img), "--catalog", "nvss", "--batch", "--config", str(conf)]) == 0
    assert main(["worker", "--once", "--config", str(conf)]) == 0
    capsys.readouterr()
    assert main(["jobs", "show", "1", "--json", "--config", str(conf)]) == 0
    job = json.loads(capsys.readouterr().out)
    outcome = job["items"][0]["outcome"]
    assert outcome["norm_status"] == "failed"
    assert outcome["norm_reason"].startswith("too few references (compact-source test)")
    assert outcome["see"] == f"contimg-photometry images show {outcome['image_id']}"


def _season(manager, sim_field, tmp_path, n, seed=5):
    gains = 1 + np.random.default_rng(seed).normal(0, 0.05, n)
    results = []
    for k in range(n):
        p = tmp_path / "images" / f"f{k:02d}.img-image-pb.fits"
        sim_field.image(p, mjd=60676.0 + k, gain=gains[k], seed=100 + k)
        results.append(manager.measure_for_fits(p, create_batch_job=False))
    return gains, results


def test_fallback_ensemble_when_no_catalogue_reference_is_bright(sim_field, tmp_path, capsys):
    """No source reaches the reference SNR: the first epochs cannot be normalised when they
    arrive (reason stored, saying the ensemble needs more epochs); from ENSEMBLE_MIN_EPOCHS on,
    the sources the service has seen to be steady normalise the images, flagged 'ensemble',
    and the earlier epochs are normalised then too."""
    from dsa110_contimg.photometry import PhotometryManager
    from dsa110_contimg.pipeline.references import ENSEMBLE_MIN_EPOCHS
    from dsa110_contimg.service.config import load_config

    conf = _deployment(tmp_path, sim_field, photometry={"norm_min_snr": 1e6}, resolved=False)
    scfg = load_config(conf)
    manager = PhotometryManager(scfg.paths.products_db, default_config=scfg.photometry,
                                catalog_dir=scfg.paths.catalog_dir)
    n = ENSEMBLE_MIN_EPOCHS + 4
    gains, results = _season(manager, sim_field, tmp_path, n)
    early = [r.normalization for r in results[:ENSEMBLE_MIN_EPOCHS - 1]]
    assert all(x["status"] == "failed" for x in early), early
    assert all(x["reason"].startswith("too few references (no bright sources)")
               and f"fewer than {ENSEMBLE_MIN_EPOCHS} epochs" in x["reason"] for x in early)
    late = [r.normalization for r in results[ENSEMBLE_MIN_EPOCHS:]]
    assert all(x["status"] == "ok" and x["method"] == "ensemble" and x["n_refs"] >= 3 for x in late)
    # the factors follow the injected gains (relative to the ensemble's own baseline)
    f = np.array([x["factor"] for x in late]) / gains[ENSEMBLE_MIN_EPOCHS:]
    assert np.std(f) / np.mean(f) < 0.01
    capsys.readouterr()
    assert main(["images", "list", "--json", "--config", str(conf)]) == 0
    stored = json.loads(capsys.readouterr().out)
    assert [r["norm_status"] for r in stored] == ["ok"] * n          # the early ones too
    assert main(["images", "show", str(results[-1].image_id), "--config", str(conf)]) == 0
    out = capsys.readouterr().out
    assert "normalisation: ok (ensemble)" in out and "chosen (fallback ensemble): steady" in out
    assert "used: ratio" in out


def test_resolved_sources_are_never_references_not_even_in_the_ensemble(sim_field, tmp_path,
                                                                        capsys):
    """Every catalogue source is resolved in the image's beam: no image is normalised, not
    by the fallback ensemble either, and each says why."""
    from dsa110_contimg.photometry import PhotometryManager
    from dsa110_contimg.pipeline.references import ENSEMBLE_MIN_EPOCHS
    from dsa110_contimg.service.config import load_config

    conf = _deployment(tmp_path, sim_field)
    scfg = load_config(conf)
    manager = PhotometryManager(scfg.paths.products_db, default_config=scfg.photometry,
                                catalog_dir=scfg.paths.catalog_dir)
    _, results = _season(manager, sim_field, tmp_path, ENSEMBLE_MIN_EPOCHS + 1)
    norm = [r.normalization for r in results]
    assert all(x["status"] == "failed" for x in norm), norm
    assert norm[-1]["reason"].startswith("too few references (compact-source test)")
    assert "fallback ensemble: only 0 steady source(s)" in norm[-1]["reason"]
    capsys.readouterr()
    assert main(["images", "show", str(results[-1].image_id), "--json", "--config", str(conf)]) == 0
    refs = json.loads(capsys.readouterr().out)["references"]
    assert refs and all(not r["chosen"] and r["role"] == "rejected" and r["compactness"] == "resolved"
                        for r in refs)


def test_lightcurve_png_uses_configured_baseline_and_stored_significance(sim_field, tmp_path,
                                                                         capsys, monkeypatch):
    from dsa110_contimg.pipeline import plotting

    conf = _deployment(tmp_path, sim_field, photometry={"norm_baseline_epochs": 4})
    img = tmp_path / "images" / "e0.img-image-pb.fits"
    sim_field.image(img)
    assert main(["measure", str(img), "--catalog", "nvss", "--config", str(conf)]) == 0
    seen = {}
    real = plotting.plot_lightcurve

    def spy(lc, path, **kw):
        seen.update(kw)
        return real(lc, path, **kw)

    monkeypatch.setattr(plotting, "plot_lightcurve", spy)
    name = str(sim_field.names[0])
    assert main(["lightcurve", name, "-o", str(tmp_path / "lc.png"), "--config", str(conf)]) == 0
    assert seen["baseline_epochs"] == 4 and (tmp_path / "lc.png").stat().st_size > 1000
    # the legend quotes the stored candidate's numbers, as `ese list` prints them
    cand = {"id": 7, "score": 8.25, "sigma": 6.4, "depth": 0.45, "duration_days": 40.0}
    label = plotting.ese_label(None, cand)
    assert label == "ESE candidate #7: score 8.2, sigma 6.4, depth 45%, 40 d"


def test_renormalise_normalises_a_fields_waiting_epochs_on_demand(sim_field, tmp_path, capsys,
                                                                  monkeypatch):
    """With the automatic catch-up switched off (as in a database written before it), the
    early epochs stay un-normalised; ``images renormalise --field`` normalises them and
    recomputes the running statistics over every epoch."""
    import sqlite3

    from dsa110_contimg.photometry import PhotometryManager
    from dsa110_contimg.pipeline.references import ENSEMBLE_MIN_EPOCHS
    from dsa110_contimg.pipeline.steps import normalise
    from dsa110_contimg.service.config import load_config

    monkeypatch.setattr(normalise, "PENDING_BATCH", 0)
    conf = _deployment(tmp_path, sim_field, photometry={"norm_min_snr": 1e6}, resolved=False)
    scfg = load_config(conf)
    manager = PhotometryManager(scfg.paths.products_db, default_config=scfg.photometry,
                                catalog_dir=scfg.paths.catalog_dir)
    n = ENSEMBLE_MIN_EPOCHS + 2
    gains, results = _season(manager, sim_field, tmp_path, n)
    assert sum(r.normalization["status"] == "ok" for r in results) == 3
    capsys.readouterr()
    code = main(["images", "renormalise", "--field", str(results[-1].image_id), "--json",
                 "--config", str(conf)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = json.loads(captured.out)
    assert out["normalised"] == len(out["images"]) == ENSEMBLE_MIN_EPOCHS - 1
    with sqlite3.connect(scfg.paths.products_db) as conn:
        rows = conn.execute("select norm_status, norm_factor from images order by mjd").fetchall()
        counts = [c for (c,) in conn.execute("select n from variability_stats")]
    assert [r[0] for r in rows] == ["ok"] * n
    rel = np.array([r[1] for r in rows]) / gains
    assert np.std(rel / np.median(rel)) < 0.01
    assert np.median(counts) == n
    # nothing left to do: a clear error, exit 1
    assert main(["images", "renormalise", "--since", "60000", "--config", str(conf)]) == 1
    assert "no image selected" in capsys.readouterr().err
