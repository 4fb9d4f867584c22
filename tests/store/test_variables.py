"""``sources list --variable``: the variables of each field from the stored statistics."""

from __future__ import annotations

import json

import numpy as np

from dsa110_contimg.cli.main import main as cli_main

from variable_seasons import season, store_season


def test_sources_list_variable_lists_the_dip_flare_and_fade_and_no_steady_source(tmp_path, capsys):
    t, flux, err = season(n_steady=400, seed=5)
    sid = store_season(tmp_path / "p.sqlite3", t, flux, err)
    db = str(tmp_path / "p.sqlite3")
    assert cli_main(["sources", "list", "--variable", "--products-db", db, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    got = {r["source_id"]: r for r in rows}
    assert set(got) == {int(s) for s in sid[:3]}, [(r["catalog_id"], r["reason"]) for r in rows]
    dip, flare, fade = (got[int(s)] for s in sid[:3])
    assert "two_epoch" in dip["criteria"] and abs(dip["m"]) >= 0.26 and dip["vs"] >= 4.3
    assert "two_epoch" in flare["criteria"] and abs(flare["m"]) >= 0.26
    assert "eta_v" in fade["criteria"] and fade["eta"] > fade["eta_threshold"]
    assert all(r["n_epochs"] == np.isfinite(flux[0]).sum() for r in rows)
    assert all(r["reason"] for r in rows)
    assert cli_main(["sources", "list", "--variable", "--products-db", db]) == 0
    out = capsys.readouterr().out
    assert "|Vs|" in out and "eta" in out and "NVSS J000000" in out
