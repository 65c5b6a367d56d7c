"""The pixel algorithms preprocessing is built from, on their degenerate cases."""

from __future__ import annotations

import numpy as np

from mnistctl.images.pixels import at_most, full_size, otsu, piece_boxes, pieces, reduce_to, rotate


def test_otsu_cuts_between_two_levels_in_the_middle_of_the_tie():
    two = np.array([0.1] * 50 + [0.9] * 50)  # every cut between the levels separates the same pixels
    assert 0.4 <= otsu(two) <= 0.6
    assert 0.1 < otsu(np.array([0.1] * 95 + [0.9] * 5)) < 0.9  # however few pixels one level holds
    noisy = np.concatenate([np.random.default_rng(0).normal(0.2, 0.05, 500), np.full(100, 0.8)])
    assert 0.3 < otsu(np.clip(noisy, 0, 1)) < 0.8
    assert 0.0 <= otsu(np.full(10, 0.5)) <= 1.0  # one level: any cut, no error


def test_pieces_are_8_connected_and_an_empty_mask_has_none():
    mask = np.zeros((6, 6), bool)
    assert pieces(mask)[1] == 0 and not pieces(mask)[0].any()
    mask[0, 0] = mask[1, 1] = mask[2, 2] = True  # touching at corners: one piece
    mask[4:, 4:] = True
    labels, count = pieces(mask)
    assert count == 2 and labels[0, 0] == labels[2, 2] != labels[5, 5] and (labels > 0).sum() == 7


def test_reduction_and_a_reduced_mask_back_at_full_size():
    a = np.zeros((100, 40), np.float32)
    a[:50] = 1.0
    small = reduce_to(a, 10)
    assert small.shape == (10, 4) and np.allclose(small[:5], 1) and np.allclose(small[5:], 0)
    assert at_most(a, 200) is a and at_most(a, 50).shape == (50, 20)
    back = full_size(small > 0.5, a.shape)
    assert back.shape == a.shape and np.array_equal(back, a > 0.5)


def _pil_filter(a: np.ndarray, which) -> np.ndarray:
    from PIL import Image
    return np.array(Image.fromarray(a.astype(np.float32), mode="F").filter(which), dtype=np.float32)


def test_the_opencv_filters_decide_as_pillows_did():
    """The filters moved from Pillow to OpenCV (#35) give Pillow's values, edges included, on
    random pictures of several shapes: masks and grey levels, odd sizes, one-pixel rows."""
    from PIL import ImageFilter

    from mnistctl.images.pixels import max_filter, median3, min_filter

    rng = np.random.default_rng(0)
    for shape in [(1, 7), (3, 3), (9, 31), (64, 48), (101, 77)]:
        grey = rng.random(shape, dtype=np.float32)
        grey[rng.random(shape) < 0.3] = 0.0  # ties, as on a canvas
        mask = grey > 0.5
        assert np.array_equal(min_filter(grey), _pil_filter(grey, ImageFilter.MinFilter(3)))
        assert np.array_equal(max_filter(grey, 7), _pil_filter(grey, ImageFilter.MaxFilter(7)))
        assert np.array_equal(min_filter(mask), _pil_filter(mask, ImageFilter.MinFilter(3)) > 0)
        assert np.array_equal(max_filter(mask), _pil_filter(mask, ImageFilter.MaxFilter(3)) > 0)
        if min(shape) >= 3:
            assert np.array_equal(median3(grey), _pil_filter(grey, ImageFilter.MedianFilter(3)))


def test_otsus_histogram_counts_as_numpys_and_pieces_are_numbered_in_reading_order():
    from mnistctl.images.pixels import _histogram

    rng = np.random.default_rng(1)
    for values in [rng.random(1000), np.array([0.0, 1.0, 0.5, 0.015625, 0.984375]), np.linspace(-0.5, 1.5, 333),
                   np.zeros(0), np.full(7, 1.0)]:
        assert np.array_equal(_histogram(values, 64), np.histogram(values, 64, range=(0.0, 1.0))[0]), values
    mask = rng.random((40, 40)) < 0.2
    labels, count = pieces(mask)
    firsts = [int(np.flatnonzero(labels.ravel() == k)[0]) for k in range(1, count + 1)]
    assert count > 5 and firsts == sorted(firsts) and np.array_equal(labels > 0, mask)


def test_percentiles_of_rows_are_numpys():
    from mnistctl.images.pixels import percentile_rows

    rng = np.random.default_rng(2)
    for n in (1, 2, 3, 4, 5, 37, 1320):
        rows = rng.random((9, n), dtype=np.float32)
        rows[rng.random(rows.shape) < 0.4] = 0.0  # ties
        for q in (0, 25, 50, 75, 90, 100):
            assert np.array_equal(percentile_rows(rows, q), np.percentile(rows, q, axis=1)), (n, q)


def test_piece_boxes_bound_each_piece():
    mask = np.zeros((10, 12), bool)
    mask[1:4, 2:5] = True  # a block
    mask[6, 0:12] = True  # a line across
    mask[8, 10] = True  # a speck
    labels, count = pieces(mask)
    assert count == 3
    assert piece_boxes(labels, count).tolist() == [[2, 1, 5, 4], [0, 6, 12, 7], [10, 8, 11, 9]]


def test_a_turn_is_pillows_turn():
    """``rotate`` (OpenCV) gives Pillow's ``Image.rotate`` of an "F" image: its size when expanded, its
    fill where the picture was not, its values elsewhere -- on sharp noise and smooth pictures, odd
    and even sides, the turns the printed-lines search makes."""
    from PIL import Image
    rng = np.random.default_rng(7)
    for trial in range(60):
        h, w = (int(v) for v in rng.integers(40, 200, 2))
        a = rng.random((h, w)).astype(np.float32)
        if trial % 2:
            a = np.array(Image.fromarray(a, "F").resize((w // 5, h // 5)).resize((w, h), Image.Resampling.BILINEAR))
        angle = float(rng.choice([-6.25, -3.0, -0.25, 0.5, 0.75, 4.75, 6.25]))
        expand = trial % 3 == 0
        fill = float("nan") if expand else 0.0
        pillow = np.array(Image.fromarray(a, "F").rotate(angle, Image.Resampling.BILINEAR, expand=expand,
                                                         fillcolor=fill), dtype=np.float32)
        ours = rotate(a, angle, expand, fill)
        assert ours.shape == pillow.shape, (h, w, angle, expand)
        assert np.array_equal(np.isnan(ours), np.isnan(pillow))
        assert np.nanmax(np.abs(ours - pillow)) < 1e-5
        assert (ours == 0).sum() == (pillow == 0).sum() or expand


def test_a_stroke_along_a_printed_line_is_kept_without_dividing_by_zero():
    """A row of a printed line's soft edge where a stroke runs along most of it reads as full ink; the
    line's level there was taken as 1 and the removal divided by zero (numpy's warnings, infinities
    clipped later). The edge is as faint as the line at most: the lines go, the stroke stays."""
    import warnings

    from mnistctl.images.rulings import without_rulings

    g = np.zeros((120, 160), np.float32)
    g[::12] = 0.3  # faint printed lines
    g[1::12, :112] = 1.0  # a stroke along each, over 70% of the row
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, turns = without_rulings(g)
    assert turns[0] == 0.0 and np.isfinite(out).all() and float(out.max()) <= 1.0
    assert float(out[::12].max()) == 0.0 and float(out[1::12, :112].min()) == 1.0
