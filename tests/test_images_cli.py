"""``images list|show``, the ``status`` reason summary and ``jobs show`` links: why an image
was (not) normalised, on the command line."""

from __future__ import annotations

import json

import numpy as np
from astropy.table import Table

from dsa110_contimg.cli.main import main
from dsa110_contimg.service.config import render_config


def _deployment(tmp_path, sim_field, photometry=None):
    """A config written by render_config (init's defaults) over the simulated field, whose
    catalogue says every source is resolved (measured deconvolved size 40", beam 15")."""
    root = tmp_path / "deploy"          # (the fixture's own catalogue is in tmp_path/catalogs)
    root.mkdir()
    conf = root / "photometry.toml"
    conf.write_text(render_config(root, photometry=photometry))
    (tmp_path / "images").mkdir(exist_ok=True)
    t = Table.read(sim_field.csv_path)
    n = len(t)
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
