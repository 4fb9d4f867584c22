"""A short soak (bench/soak.py): the real daemon with real photometry over 72 small images of
three fields; its open file descriptors and threads (daemon and workers) stay flat after
warm-up, every job is done and SIGTERM ends it cleanly. Counts only, no timings."""

from __future__ import annotations

import argparse

import pytest

from benchmods import load_bench

pytestmark = pytest.mark.timeout(300)


def test_short_soak_leaks_no_descriptors_or_threads(tmp_path):
    soak = load_bench("soak")
    args = argparse.Namespace(images=72, fields=3, size=64, sources=8, workers=2, interval=0.0,
                              epoch_days=1.0, backlog=4, sample_s=0.5, max_s=0.0, work=tmp_path / "work", keep=True)
    samples, images, rc = soak.run(args)
    assert rc == 0, "the daemon did not exit cleanly on SIGTERM"
    assert len(images) == 72 and all(r["status"] == "done" for r in images), \
        [r for r in images if r["status"] != "done"][:5]
    # warm-up: the first third of the images (workers spawned, catalogue and caches opened)
    warm = [s for s in samples if 24 <= s["done"] < 48]
    late = [s for s in samples if s["done"] >= 48]
    assert warm and late
    assert {s["n_children"] for s in late} <= {s["n_children"] for s in samples if s["done"] >= 1}
    for key, slack in (("fds_daemon", 3), ("fds_children", 4), ("threads_daemon", 1),
                       ("threads_children", 1)):
        # a leak of one per image would add ~24 here; transient handles (a connection open
        # while it is sampled) account for the slack
        assert max(s[key] for s in late) <= max(s[key] for s in warm) + slack, \
            (key, [s[key] for s in samples])
