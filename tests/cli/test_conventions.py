"""The command line without surprises: every command with a closed stdout, an unwritable
output, a bad option and a missing database gives at most one line on stderr (never a
traceback) and the documented exit code (0 ok, 1 failure, 2 usage, 3 not running, 4 no
database); every option has help text; the codes are in every --help."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from astropy.table import Table

from dsa110_contimg.cli.main import build_parser, main
from dsa110_contimg.science.simulate import simulate_image

pytestmark = pytest.mark.timeout(300)

OK, FAIL, USAGE, NOT_RUNNING, NO_DB = 0, 1, 2, 3, 4
RA = np.array([150.0, 150.01, 149.995])
DEC = np.array([37.0, 37.02, 36.99])
PEAK = np.array([0.02, 0.01, 0.005])
NAMES = ["DEMO A", "DEMO B", "DEMO C"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A service with a products database holding one measured image, a catalogue, an
    image and a positions file."""
    root = tmp_path_factory.mktemp("site")
    assert main(["init", str(root / "svc")]) == 0
    cfg = root / "svc" / "photometry.toml"
    img = simulate_image((256, 256), ra_deg=RA, dec_deg=DEC, peak_jyb=PEAK, naxis=4,
                         seed=7).write(root / "field.img-image-pb.fits")
    cat = root / "nvss.csv"
    Table({"NVSS": NAMES, "RAJ2000": RA, "DEJ2000": DEC, "S1.4": PEAK * 1e3}).write(cat)
    assert main(["catalog", "ingest", "nvss", str(cat), "--ra-column", "RAJ2000", "--dec-column",
                 "DEJ2000", "--flux-column", "S1.4", "--flux-unit", "mJy", "--config", str(cfg)]) == 0
    assert main(["measure", str(img), "--catalog", "nvss", "--config", str(cfg), "--batch"]) == 0
    assert main(["worker", "--once", "--config", str(cfg)]) == 0     # job 1: done
    pos = root / "pos.csv"
    Table({"name": NAMES, "ra": RA, "dec": DEC}).write(pos)
    return {"root": root, "cfg": cfg, "img": img, "pos": pos, "missing": root / "none" / "p.sqlite3"}


def _one_line(err: str) -> None:
    """At most one error line (warnings and notes may precede it), never a traceback."""
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith(("warning:", "note:"))]
    assert len(lines) <= 1, err
    assert "Traceback" not in err, err


def _fmt(argv, site) -> list[str]:
    return [str(a).format(**{k: str(v) for k, v in site.items()}) for a in argv]


# -- every command: usage errors ------------------------------------------------------------
def _leaf_commands(parser, prefix=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix
        return
    for name, child in subs[0].choices.items():
        yield from _leaf_commands(child, prefix + (name,))


LEAVES = sorted(set(_leaf_commands(build_parser())))


@pytest.mark.parametrize("cmd", LEAVES, ids=" ".join)
def test_bad_option_is_one_line_and_exit_2(cmd, capsys):
    assert main([*cmd, "--no-such-option"]) == USAGE
    out, err = capsys.readouterr()
    _one_line(err)
    assert "error:" in err and out == ""


@pytest.mark.parametrize("cmd", LEAVES, ids=" ".join)
def test_every_option_has_help_and_exit_codes_documented(cmd, capsys):
    parser = build_parser()
    for name in cmd:
        sub = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)][0]
        parser = sub.choices[name]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and action.help != argparse.SUPPRESS, (cmd, action.dest)
    assert "2 usage" in parser.epilog and "4 database" in parser.epilog, cmd
    assert main([*cmd, "--help"]) == OK
    assert "exit codes" in capsys.readouterr().out


# -- missing database, unwritable output -----------------------------------------------------
CASES = [
    # (argv, expected exit code, what)
    (["status", "--products-db", "{missing}"], NO_DB, "missing database"),
    (["status", "--json", "--products-db", "{missing}"], NO_DB, "missing database"),
    (["jobs", "list", "--products-db", "{missing}"], NO_DB, "missing database"),
    (["jobs", "show", "1", "--products-db", "{missing}"], NO_DB, "missing database"),
    (["jobs", "retry", "1", "--products-db", "{missing}"], NO_DB, "missing database"),
    (["jobs", "requeue", "1", "--products-db", "{missing}"], NO_DB, "missing database"),
    (["jobs", "cancel", "1", "--products-db", "{missing}"], NO_DB, "missing database"),
    (["ese", "list", "--products-db", "{missing}"], NO_DB, "missing database"),
    (["ese", "investigate", "1", "--products-db", "{missing}"], NO_DB, "missing database"),
    (["ese", "dismiss", "1", "--products-db", "{missing}"], NO_DB, "missing database"),
    (["ese", "reactivate", "1", "--products-db", "{missing}"], NO_DB, "missing database"),
    (["lightcurve", "1", "--products-db", "{missing}"], NO_DB, "missing database"),
    (["measure", "{img}", "--catalog", "nvss", "--products-db", "/proc/nodb/p.sqlite3",
      "--config", "{cfg}"], NO_DB, "uncreatable database"),
    (["worker", "--once", "--products-db", "/proc/nodb/p.sqlite3"], NO_DB, "uncreatable database"),
    (["db", "upgrade", "--products-db", "/proc/nodb/p.sqlite3"], NO_DB, "uncreatable database"),
    (["measure", "{img}", "--positions", "{pos}", "-o", "/nonexistent_dir/x.csv"], FAIL, "unwritable"),
    (["measure", "{img}", "--positions", "{pos}", "-o", "/nonexistent_dir/x.vot"], FAIL, "unwritable"),
    (["lightcurve", "DEMO A", "--config", "{cfg}", "-o", "/nonexistent_dir/x.png"], FAIL, "unwritable"),
    (["lightcurve", "DEMO A", "--config", "{cfg}", "-o", "/nonexistent_dir/x.fits"], FAIL, "unwritable"),
    (["catalog", "cone", "nvss", "150", "37", "1", "--config", "{cfg}", "-o", "/nonexistent_dir/c.csv"],
     FAIL, "unwritable"),
    (["catalog", "ingest", "nvss", "{root}/nvss.csv", "--catalog-dir", "/proc/nocat"], FAIL, "unwritable"),
    (["init", "/proc/nosuch/svc"], FAIL, "unwritable"),
    (["init", "{pos}/svc"], FAIL, "unwritable (a file as folder)"),
    (["init", "--systemd", "--destdir", "/proc/nosuch"], FAIL, "unwritable"),
    (["demo", "--workdir", "/proc/nosuch/demo"], FAIL, "unwritable"),
    (["run", "--config", "/nonexistent_dir/photometry.toml"], USAGE, "missing configuration"),
    (["run"], USAGE, "no configuration named"),
    (["measure", "{img}"], USAGE, "neither --positions nor --catalog"),
    (["jobs", "retry"], USAGE, "no job id"),
    (["init", "{root}/x", "--systemd"], USAGE, "DIR and --systemd"),
    (["jobs", "show", "999", "--config", "{cfg}"], FAIL, "no such job"),
    (["jobs", "retry", "1", "--config", "{cfg}"], FAIL, "a done job is not retried"),
    (["status", "--config", "{cfg}"], NOT_RUNNING, "no daemon"),
    (["db", "check", "--products-db", "{missing}"], NO_DB, "missing database"),
    (["db", "backup", "{root}/bk", "--products-db", "{missing}"], NO_DB, "missing database"),
    (["db", "prune", "--jobs-before", "30d", "--products-db", "{missing}"], NO_DB, "missing database"),
    (["files", "list", "--products-db", "{missing}"], NO_DB, "missing database"),
    (["jobs", "ack", "--products-db", "{missing}", "1"], NO_DB, "missing database"),
]

# -- what the one error line says, on stderr only -------------------------------------------
MESSAGES = [
    # (argv, exit code, what stderr says)
    (["measure", "{img}"], USAGE, "one of the arguments --positions --catalog is required"),
    (["measure", "{img}", "--positions", "{pos}", "--catalog", "nvss"], USAGE, "not allowed with"),
    (["lightcurve", "DEMO A", "--config", "{cfg}", "-o", "{root}/lc.txt"], USAGE,
     "expected a plot (.png .pdf .svg) or a table (.csv .ecsv .fits .fit .vot .xml)"),
    (["lightcurve", "DEMO A", "--config", "{cfg}", "-o", "{root}/lc.pdf", "--format", "csv"], USAGE,
     "no --format with a .pdf plot"),
    (["catalog", "cone", "nvss", "10h00m", "+37d", "3parsec", "--config", "{cfg}"], USAGE,
     "radius: expected degrees (0.5) or units (30arcmin"),
    (["catalog", "cone", "nvss", "10:00:00", "+95:00:00", "1", "--config", "{cfg}"], USAGE,
     "Dec: must be within [-90, +90]"),
    (["config", "check", "--config", "{root}/typo.toml"], FAIL,
     "unknown key 'daemon.wrokers' (= 2): did you mean 'daemon.workers'?"),
    (["config", "check", "--config", "{root}/typo-section.toml"], FAIL,
     "unknown section [deamon]: did you mean [daemon]?"),
    (["jobs", "cancel", "1", "--config", "{cfg}"], FAIL, "only a pending or running job can be cancelled"),
    (["jobs", "retry", "1", "--config", "{cfg}"], FAIL, "use `contimg-photometry jobs requeue 1`"),
    (["jobs", "ack", "1", "--config", "{cfg}"], FAIL, "only a failed or dead job can be acknowledged"),
    (["jobs", "ack", "--config", "{cfg}"], USAGE, "give a JOB_ID or --all"),
    (["jobs", "show", "99", "--config", "{cfg}"], FAIL, "no job 99"),
    (["files", "list", "--limit", "-1", "--config", "{cfg}"], USAGE, "expected an integer >= 0"),
    (["db", "prune", "--config", "{cfg}"], USAGE, "the following arguments are required: --jobs-before"),
]


@pytest.mark.parametrize("argv,code,needle", MESSAGES, ids=[" ".join(c[0][:2]) + f" ({c[2][:30]})"
                                                             for c in MESSAGES])
def test_each_error_says_what_is_wrong_on_stderr(site, argv, code, needle, capsys, monkeypatch):
    monkeypatch.delenv("CONTIMG_PHOTOMETRY_CONFIG", raising=False)
    (site["root"] / "typo.toml").write_text("[daemon]\nwrokers = 2\n")
    (site["root"] / "typo-section.toml").write_text("[deamon]\nworkers = 2\n")
    capsys.readouterr()
    assert main(_fmt(argv, site)) == code
    out, err = capsys.readouterr()
    _one_line(err)
    assert out == "" and needle in err and "{" not in err, (out, err)


@pytest.mark.parametrize("argv,code,what", CASES, ids=[" ".join(c[0][:2]) + f" ({c[2]})" for c in CASES])
def test_errors_are_one_line_with_documented_codes(site, argv, code, what, capsys, monkeypatch):
    monkeypatch.delenv("CONTIMG_PHOTOMETRY_CONFIG", raising=False)
    assert main(_fmt(argv, site)) == code, capsys.readouterr().err
    out, err = capsys.readouterr()
    _one_line(err)
    if code not in (OK, NOT_RUNNING):
        assert "error:" in err, err
        # stdout stays empty, except `status --json`, which still answers in JSON
        assert out == "" or ("--json" in argv and json.loads(out)["error"]), (out, err)


def test_done_job_retry_explains_and_requeue_remeasures(site, capsys):
    cfg = str(site["cfg"])
    assert main(["jobs", "retry", "1", "--config", cfg]) == FAIL
    out, err = capsys.readouterr()
    assert "jobs requeue 1" in err and out == ""
    assert main(["jobs", "requeue", "1", "--config", cfg]) == OK
    assert "requeued" in capsys.readouterr().out
    assert main(["jobs", "list", "--config", cfg, "--limit", "0"]) == OK
    out = capsys.readouterr().out.splitlines()
    assert "pending" in out[1] and str(site["img"]) in out[1]
    assert main(["worker", "--once", "--config", cfg]) == OK
    capsys.readouterr()
    assert main(["jobs", "show", "1", "--config", cfg]) == OK
    shown = capsys.readouterr().out
    assert "status:" in shown and "done" in shown and "3 measurements" in shown and "{" not in shown
    assert main(["jobs", "list", "--json", "--config", cfg]) == OK
    import json

    row = json.loads(capsys.readouterr().out)["jobs"][0]
    assert row["paths"] == [str(site["img"])] and "error" in row and row["attempts"] == 1


# -- the smaller things that work ------------------------------------------------------------
def test_plot_formats_angles_with_units_aligned_list_and_init(site, capsys, tmp_path):
    cfg = str(site["cfg"])
    for suffix, magic in ((".pdf", b"%PDF"), (".svg", b"<?xml"), (".png", b"\x89PNG")):
        out = tmp_path / f"lc{suffix}"
        assert main(["lightcurve", "DEMO A", "--config", cfg, "-o", str(out)]) == OK
        assert out.read_bytes()[:len(magic)] == magic
    capsys.readouterr()
    cones = []
    for where in (["150", "37", "0.1"], ["10:00:00", "+37:00:00", "6arcmin"],
                  ["10h00m00s", "37d", "360\""], ["150.0d", "37:00:00", "0.1deg"]):
        assert main(["catalog", "cone", "nvss", *where, "--json", "--config", cfg]) == OK
        cones.append(capsys.readouterr().out)
    assert len(json.loads(cones[0])) == 3 and all(c == cones[0] for c in cones)
    # a negative sexagesimal Dec is a value, not an option (the catalogue does not cover it)
    assert main(["catalog", "cone", "nvss", "10:00:00", "-36:59:00", "1", "--config", cfg]) == FAIL
    assert "does not cover" in capsys.readouterr().err
    assert main(["catalog", "list", "--config", cfg]) == OK
    lines = capsys.readouterr().out.splitlines()
    blank = lines.index("")
    for table in (lines[:blank], lines[blank + 1:]):
        assert table[0].startswith("survey  rows  ") and len(table) >= 2
        end = table[0].index("rows") + len("rows")          # numbers right-aligned under "rows"
        assert all(row[end - 1].isdigit() and row[end] == " " for row in table[1:]), table
    assert "Dec range (deg)" in lines[0] and "coverage (deg)" in lines[blank + 1]
    assert "source file" in lines[blank + 1] and "nvss.csv" in lines[blank + 2]
    text = site["cfg"].read_text()
    assert "contimg-photometry config dump" in text and "source tree" not in text


def test_no_library_log_line_on_the_terminal(site, tmp_path):
    """matplotlib announces its font cache on first use in a fresh environment; the
    terminal gets only the command's own line."""
    env = dict(os.environ, MPLCONFIGDIR=str(tmp_path / "mpl"))
    env.pop("CONTIMG_PHOTOMETRY_CONFIG", None)
    p = subprocess.run([sys.executable, "-m", "dsa110_contimg.cli.main", "lightcurve", "DEMO A",
                        "--config", str(site["cfg"]), "-o", str(tmp_path / "lc.png")],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == OK, p.stderr
    assert p.stderr.splitlines() == [f"light curve of DEMO A (1 epochs) -> {tmp_path / 'lc.png'}"], p.stderr
    assert (tmp_path / "mpl").is_dir()          # matplotlib did start fresh here


# -- closed stdout (`| head` that already exited) ------------------------------------------
CLOSED = [
    (["status", "--config", "{cfg}"], FAIL),
    (["status", "--json", "--config", "{cfg}"], FAIL),
    (["status", "--products-db", "{missing}"], NO_DB),          # error before any output
    (["jobs", "list", "--config", "{cfg}"], FAIL),
    (["jobs", "list", "--json", "--config", "{cfg}"], FAIL),
    (["jobs", "show", "1", "--config", "{cfg}"], FAIL),
    (["ese", "list", "--all", "--config", "{cfg}"], FAIL),
    (["catalog", "list", "--config", "{cfg}"], FAIL),
    (["catalog", "cone", "nvss", "150", "37", "1", "--config", "{cfg}"], FAIL),
    (["catalog", "cone", "nvss", "150", "37", "1", "--json", "--config", "{cfg}"], FAIL),
    (["lightcurve", "DEMO A", "--config", "{cfg}"], FAIL),
    (["lightcurve", "DEMO A", "--config", "{cfg}", "--format", "csv"], FAIL),
    (["measure", "{img}", "--positions", "{pos}"], FAIL),
    (["measure", "{img}", "--positions", "{pos}", "--json"], FAIL),
    (["init", "{root}/closed-init"], FAIL),
    (["db", "upgrade", "--config", "{cfg}"], FAIL),
    (["worker", "--once", "--config", "{cfg}"], FAIL),
    (["demo", "--workdir", "{root}/closed-demo", "--epochs", "2"], FAIL),
    (["run", "--config", "/nonexistent_dir/photometry.toml"], USAGE),
    (["--help"], OK),
    (["jobs", "--help"], OK),
]


@pytest.mark.parametrize("argv,code", CLOSED, ids=[" ".join(c[0][:3]) for c in CLOSED])
def test_closed_stdout(site, argv, code):
    r, w = os.pipe()
    os.close(r)   # the reader is gone: every write gets EPIPE
    env = dict(os.environ)
    env.pop("CONTIMG_PHOTOMETRY_CONFIG", None)
    try:
        p = subprocess.run([sys.executable, "-m", "dsa110_contimg.cli.main", *_fmt(argv, site)],
                           stdout=w, stderr=subprocess.PIPE, text=True, timeout=120, env=env,
                           cwd=site["root"])
    finally:
        os.close(w)
    _one_line(p.stderr)
    assert "BrokenPipe" not in p.stderr and "Exception ignored" not in p.stderr, p.stderr
    assert p.returncode == code, p.stderr
