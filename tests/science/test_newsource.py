"""New-source significance (VAST true sigma, TraP likely transient) and false-positive classes."""

from __future__ import annotations

import numpy as np

from dsa110_contimg.science.newsource import (
    NewSourceRules, false_positive_reasons, new_source_significance)


def test_first_visit_is_never_new():
    v = new_source_significance([1.0], np.full((1, 2), np.nan), [["outside", "outside"]],
                                [1e-3, 1e-3], [2e-3, 2e-3])
    assert not v.is_new[0] and np.isnan(v.new_high_sigma[0]) and v.n_covering[0] == 0
    assert v.reason[0].startswith("first visit")


def test_new_high_sigma_is_the_largest_local_significance_and_names_its_image():
    peak = np.array([20e-3, 5.5e-3, 20e-3])
    rms = np.array([[2e-3, 1e-3, np.nan], [1e-3, 1e-3, np.nan], [np.nan, np.nan, np.nan]])
    status = [["ok", "ok", "outside"], ["ok", "ok", "outside"], ["edge", "blanked", "outside"]]
    v = new_source_significance(peak, rms, status, [0.8e-3, 0.9e-3, 1e-3], [5e-3, 3e-3, 4e-3])
    assert v.is_new.tolist() == [True, False, False]
    assert np.isclose(v.new_high_sigma[0], 20.0) and v.new_sigma_image[0] == 1
    assert np.isclose(v.sigma_rms_min[0], 20e-3 / 0.8e-3)
    assert v.likely_transient[0]                 # 20 mJy > 6 x 3 mJy (rms_max of image 1)
    assert "too shallow" in v.reason[1]          # 5.5 sigma < 6: a noise peak, not new
    assert "near an edge" in v.reason[2] and v.new_sigma_image[2] == -1


def test_likely_transient_needs_the_whole_earlier_image_deep_enough():
    v = new_source_significance([10e-3], [[1e-3]], [["ok"]], [1e-3], [5e-3])
    assert v.is_new[0] and not v.likely_transient[0]
    strict = new_source_significance([10e-3], [[1e-3]], [["ok"]], [1e-3], [5e-3],
                                     NewSourceRules(min_sigma=12.0))
    assert not strict.is_new[0]


def test_false_positive_classes():
    dec0 = 37.0
    ra = np.array([150.0, 150.0 + 30 / 3600, 150.2, 150.3, 150.4])
    dec = np.full(5, dec0)
    peak = np.array([2.0, 0.05, 0.01, 0.01, 0.01])
    edge = np.array([10.0, 10.0, 10.0, 1.0, 10.0])
    blank = np.array([False, False, False, False, True])
    reason, related = false_positive_reasons(peak, ra, dec, edge, blank, beam_major_arcsec=15.0)
    assert reason.tolist() == ["", "artefact", "", "edge", "blanked"]
    assert related.tolist() == [-1, 0, -1, -1, -1]
    # a comparable neighbour is no artefact
    reason, _ = false_positive_reasons([2.0, 0.5], ra[:2], dec[:2], [10, 10], [False, False],
                                       beam_major_arcsec=15.0)
    assert reason.tolist() == ["", ""]


def test_a_noise_peak_of_a_noisier_image_is_not_new_against_a_deeper_one():
    """New needs both: seen at min_sigma in an earlier image's depth, and in its own image.
    A 4.8-sigma peak of an image with 1.5 mJy noise is 7.2 sigma against an earlier 1 mJy."""
    peak = np.array([7.2e-3, 7.2e-3])
    rms, status = [[1e-3], [1e-3]], [["ok"], ["ok"]]
    v = new_source_significance(peak, rms, status, [1e-3], [2e-3], snr=[4.8, 7.0])
    assert v.is_new.tolist() == [False, True]
    assert np.allclose(v.new_high_sigma, 7.2)          # the depth figure is kept either way
    assert v.reason[0] == "too faint in its own image: snr 4.8 < 6"
    assert new_source_significance(peak, rms, status, [1e-3], [2e-3]).is_new.all()   # unchecked


def test_a_catalogue_host_off_the_image_or_blanked_makes_artefacts():
    """Sidelobes of a bright source that is not detected (beyond the edge, under a blank):
    the catalogue's bright sources count as hosts; a faint host or a far one does not."""
    ra = np.array([150.0, 150.3])
    dec = np.full(2, 37.0)
    peak = np.array([0.01, 0.01])
    kw = dict(edge_distance_beams=[3.0, 3.0], near_blank=[False, False], beam_major_arcsec=15.0)
    reason, _ = false_positive_reasons(peak, ra, dec, **kw)
    assert reason.tolist() == ["", ""]
    hosts = (np.array([150.0 + 45 / 3600, 150.3 + 45 / 3600, 150.3 + 600 / 3600]),
             np.full(3, 37.0), np.array([0.5, 0.05, 5.0]))   # bright+near, faint, bright+far
    reason, related = false_positive_reasons(peak, ra, dec, hosts=hosts, **kw)
    assert reason.tolist() == ["artefact", ""] and related.tolist() == [-1, -1]
    # a detection that makes it one is named as its host, even beside a brighter catalogue host
    reason, related = false_positive_reasons(np.r_[peak, 0.2], np.r_[ra, 150.0 - 30 / 3600],
                                             np.r_[dec, 37.0], edge_distance_beams=[3.0] * 3,
                                             near_blank=[False] * 3, beam_major_arcsec=15.0,
                                             hosts=hosts)
    assert reason.tolist() == ["artefact", "", ""] and related.tolist() == [2, -1, -1]


def test_faint_here_marks_the_detections_deep_enough_before_but_faint_now():
    rms, status = [[1e-3]] * 3, [["ok"]] * 3
    v = new_source_significance([7.2e-3, 7.2e-3, 3e-3], rms, status, [1e-3], [2e-3],
                                snr=[4.8, 7.0, 3.0])
    assert v.faint_here.tolist() == [True, False, False]     # the third is too shallow earlier
    assert "too shallow" in v.reason[2]


def test_components_inside_a_resolved_catalogue_source_are_extended():
    """A 60" x 20" source (PA 90: east-west) in an 18" beam: a component 35" east of its
    centre is inside (semi-major (63 + 18) / 2 = 40"), one 35" north is not (semi-minor 22")."""
    dec0 = -31.5
    cosd = np.cos(np.radians(dec0))
    ra = np.array([100.0 + 35 / 3600 / cosd, 100.0, 100.0])
    dec = np.array([dec0, dec0 + 35 / 3600, dec0 + 5 / 3600])
    resolved = ([100.0], [dec0], [60.0], [20.0], [90.0])
    reason, related = false_positive_reasons([0.01] * 3, ra, dec, [3.0] * 3, [False] * 3,
                                             beam_major_arcsec=18.0, resolved=resolved)
    assert reason.tolist() == ["extended", "", "extended"] and related.tolist() == [-1, -1, -1]
    # an edge or blank takes precedence (a cut island is never judged by its shape)
    reason, _ = false_positive_reasons([0.01], ra[:1], dec[:1], [1.0], [False],
                                       beam_major_arcsec=18.0, resolved=resolved)
    assert reason.tolist() == ["edge"]


def test_classifying_a_subset_gives_it_the_classes_of_the_whole():
    """Only the detections that matched nothing need a class: with ``classify`` they get the
    classes (and artefact hosts) they get when every detection is classified, the others none."""
    rng = np.random.default_rng(11)
    n = 400
    ra = 150.0 + rng.uniform(-0.3, 0.3, n)
    dec = 37.0 + rng.uniform(-0.3, 0.3, n)
    peak = 10 ** rng.uniform(-3, 0, n)
    edge = rng.uniform(0.0, 20.0, n)
    blank = rng.random(n) < 0.05
    hosts = (150.0 + rng.uniform(-0.4, 0.4, 20), 37.0 + rng.uniform(-0.4, 0.4, 20),
             10 ** rng.uniform(-1, 1, 20))
    resolved = (ra[:5] + 20 / 3600, dec[:5], np.full(5, 60.0), np.full(5, 20.0), np.full(5, 30.0))
    kw = dict(beam_major_arcsec=18.0, hosts=hosts, resolved=resolved)
    whole, whole_rel = false_positive_reasons(peak, ra, dec, edge, blank, **kw)
    pick = rng.random(n) < 0.1
    part, part_rel = false_positive_reasons(peak, ra, dec, edge, blank, classify=pick, **kw)
    assert set(whole[pick]) >= {"", "artefact"}                  # the subset has both kinds
    assert part[pick].tolist() == whole[pick].tolist()
    assert part_rel[pick].tolist() == whole_rel[pick].tolist()
    assert set(part[~pick]) == {""} and set(part_rel[~pick]) == {-1}
