"""The data layer: IDX validation, in-memory splits, normalisation, batched augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import idx_bytes, make_fake_dataset
from mnistctl.data.splits import AugmentConfig, DataConfig, augment, load_split, read_idx, sample_digits, split_indices
from mnistctl.errors import ConfigError, DataError


def test_read_idx_roundtrip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    path = tmp_path / "imgs"
    path.write_bytes(idx_bytes(images))
    tensor = read_idx(path, 3)
    assert tensor.dtype == torch.uint8 and tensor.shape == (5, 28, 28)
    assert np.array_equal(tensor.numpy(), images)


@pytest.mark.parametrize("mutate, what", [
    (lambda b: b"\x01\x02" + b[2:], "bad magic number"),
    (lambda b: b[:2] + b"\x0d" + b[3:], "element type 0x0d"),
    (lambda b: b[:3] + b"\x02" + b[4:], "2 dimensions, expected 3"),
    (lambda b: b[:-100], "truncated"),
    (lambda b: b + b"\x00", "trailing bytes"),
    (lambda b: b[:2], "too short"),
    (lambda b: b"", "0 bytes"),
])
def test_read_idx_rejects_corrupt_files(tmp_path, mutate, what):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(mutate(idx_bytes(np.zeros((3, 28, 28)))))
    with pytest.raises(DataError) as err:
        read_idx(path, 3)
    assert what in str(err.value)
    assert str(path) in str(err.value) and "mnistctl download --force" in str(err.value)


def test_read_idx_rejects_wrong_image_size(tmp_path):
    path = tmp_path / "imgs"
    path.write_bytes(idx_bytes(np.zeros((3, 32, 32))))
    with pytest.raises(DataError, match="32x32, expected 28x28"):
        read_idx(path, 3)


def _install(data_dir, dataset, files):
    d = data_dir / dataset
    d.mkdir(parents=True)
    for name, data in files.items():
        (d / name).write_bytes(data)


def test_missing_data_says_to_download(tmp_path):
    with pytest.raises(DataError, match=r"run `mnistctl download` first"):
        load_split(DataConfig(), "train", tmp_path)
    with pytest.raises(DataError, match=r"`mnistctl download --dataset fashion-mnist`"):
        load_split(DataConfig(dataset="fashion-mnist"), "test", tmp_path)


def test_label_count_mismatch_and_bad_labels(tmp_path):
    files = make_fake_dataset()
    files["t10k-labels-idx1-ubyte"] = idx_bytes(np.zeros(7))
    _install(tmp_path, "kmnist", files)
    with pytest.raises(DataError, match="40 images but t10k-labels-idx1-ubyte has 7 labels"):
        load_split(DataConfig(dataset="kmnist"), "test", tmp_path)


@pytest.mark.parametrize("dataset", ["fashion-mnist", "kmnist"])
def test_other_datasets_load_the_same_way(tmp_path, dataset):
    files = make_fake_dataset(n_train=120, n_test=40)
    _install(tmp_path, dataset, files)
    cfg = DataConfig(dataset=dataset, val_fraction=0.25)
    train_x, train_y = load_split(cfg, "train", tmp_path)
    val_x, val_y = load_split(cfg, "val", tmp_path)
    test_x, _ = load_split(cfg, "test", tmp_path)
    assert (len(train_x), len(val_x), len(test_x)) == (90, 30, 40)
    assert train_x.dtype == torch.uint8 and train_y.dtype == torch.int64
    assert cfg.info.classes[0] in ("T-shirt/top", "o")


def test_split_indices_are_seeded_disjoint_and_complete():
    train, val = split_indices(60000, 5000 / 60000, seed=0)
    assert len(train) == 55000 and len(val) == 5000
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(60000))
    again_train, again_val = split_indices(60000, 5000 / 60000, seed=0)
    assert torch.equal(val, again_val)
    _, other_val = split_indices(60000, 5000 / 60000, seed=1)
    assert not torch.equal(val, other_val)


def test_val_fraction_is_validated():
    for bad in (1.0, 0, -0.1, float("nan")):
        with pytest.raises(ConfigError, match="val fraction must be between 0 and 1") as err:
            DataConfig(val_fraction=bad)
        assert err.value.setting == "val_fraction"


def test_augment_is_batched_seeded_and_small():
    x = torch.zeros(8, 1, 28, 28)  # 0-255 pixels, as the network takes them
    x[:, :, 10:18, 12:16] = 255.0  # a bar of ink
    cfg = AugmentConfig()
    a = augment(x, cfg, torch.Generator().manual_seed(1))
    b = augment(x, cfg, torch.Generator().manual_seed(1))
    c = augment(x, cfg, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.allclose(a, x)
    # the background stays background and the ink is moved, not destroyed
    assert torch.allclose(a[:, :, 0, 0], x[:, :, 0, 0], atol=1e-5)
    ink_before, ink_after = (x - x.amin()).sum((1, 2, 3)), (a - x.amin()).sum((1, 2, 3))
    assert torch.all((ink_after / ink_before - 1).abs() < 0.35)
    identity = augment(x, AugmentConfig(degrees=0, translate=0, scale=(1, 1)))
    assert torch.allclose(identity, x, atol=1e-5)


def test_writer_style_slants_widens_wobbles_and_changes_the_pen():
    """--writer-style: with the affine changes off, each kind of writer variation alone moves the
    ink as it should (a slant tilts a vertical bar, a wider hand widens it, the wobble moves it at
    most a couple of pixels, a pen makes it bolder or finer), seeded and batched."""
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 6:22, 13:15] = 255.0  # a vertical bar: a 1
    still = {"degrees": 0, "translate": 0, "scale": (1, 1)}
    off = {"slant": 0.0, "aspect": 0.0, "narrow": 0.0, "elastic": 0.0, "pen": 0.0}
    g = torch.Generator().manual_seed(3)

    def columns(img: torch.Tensor, rows: slice) -> torch.Tensor:  # the ink's mean column in those rows
        w = img[:, 0, rows].sum(1)
        return (w * torch.arange(28.0)).sum(1) / w.sum(1).clamp_min(1e-6)

    slanted = augment(x, AugmentConfig(**still, writers=1.0, **(off | {"slant": 0.3})), g)
    lean = columns(slanted, slice(6, 10)) - columns(slanted, slice(18, 22))  # top against bottom
    assert lean.abs().max() > 2 and lean.abs().max() <= 0.3 * 16 + 1 and (lean > 0).any() and (lean < 0).any()
    box = torch.zeros(64, 1, 28, 28)
    box[:, :, 6:22, 9:19] = 255.0  # a block 10 px wide
    wide = augment(box, AugmentConfig(**still, writers=1.0, **(off | {"aspect": 0.2, "narrow": 0.7})), g)
    widths = ((wide[:, 0, 14] > 127).sum(1)).float()
    assert widths.min() >= 4 and widths.max() <= 13 and (widths < 7).any() and (widths > 10).any()
    wobbly = augment(x, AugmentConfig(**still, writers=1.0, **(off | {"elastic": 1.5})), g)
    assert not torch.allclose(wobbly, x) and (columns(wobbly, slice(6, 22)) - 13.5).abs().max() < 2
    pens = augment(x, AugmentConfig(**still, writers=1.0, **(off | {"pen": 1.0})), g)
    ink = (pens > 60).sum((1, 2, 3)).float()
    before = float((x > 60).sum((1, 2, 3))[0])
    top = pens.amax((1, 2, 3))
    assert (ink > before).any() and (top < 255).any() and (top >= 127).all()  # bolder ones; finer ones, never gone
    assert ((pens - x).abs().sum((1, 2, 3)) > 0).all()  # every image got a pen (a share of 1)
    assert torch.equal(augment(x, AugmentConfig(writers=1.0), torch.Generator().manual_seed(4)),
                       augment(x, AugmentConfig(writers=1.0), torch.Generator().manual_seed(4)))


def test_low_res_blurs_a_share_of_the_batch_as_a_small_picture_would():
    """--low-res: with the affine changes off, about that share of the images is shrunk and
    enlarged back: a hard 2 px bar comes out softer and wider (a 7-14 px picture of it), its
    brightest pixel and its centre kept; the rest are untouched; seeded; a share of 0 changes nothing."""
    x = torch.zeros(400, 1, 28, 28)
    x[:, :, 6:22, 13:15] = 255.0  # a vertical bar: a 1
    still = {"degrees": 0, "translate": 0, "scale": (1, 1)}
    cfg = AugmentConfig(**still, low_res=0.5)
    out = augment(x, cfg, torch.Generator().manual_seed(5))
    changed = (out - x).abs().amax((1, 2, 3)) > 1
    assert 0.4 < changed.float().mean() < 0.6
    assert torch.allclose(out[~changed], x[~changed], atol=1e-3)
    soft = out[changed, 0]
    assert torch.allclose(soft.amax((1, 2)), torch.full((int(changed.sum()),), 255.0), atol=1e-3)
    inked = (soft > 20).sum(2)[:, 14]  # the bar's width at mid-height: wider than its 2 px, never a blob
    assert inked.min() >= 3 and inked.max() <= 10
    centre = (soft.sum(1) * torch.arange(28.0)).sum(1) / soft.sum((1, 2))
    assert (centre - 13.5).abs().max() < 1.0
    sizes = {int(w) for w in inked}
    assert len(sizes) >= 3  # several sizes in one batch, drawn per image
    assert torch.equal(out, augment(x, cfg, torch.Generator().manual_seed(5)))
    assert torch.allclose(augment(x, AugmentConfig(**still)), x, atol=1e-3)


def test_scans_show_the_first_share_of_a_batch_as_predict_reads_an_8x8_scan():
    """--scans: the first quarter of the batch (after the other changes) becomes what predict makes
    of an 8x8 scan of it: the same 8x8 picture whatever the digit's size and place, so a large and a
    small copy of a digit come out alike; the rest is what augment gives without; nothing random."""
    x = torch.zeros(8, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 200.0  # a bold 1 ...
    x[1, :, :, :] = 0
    x[1, :, 10:18, 13:15] = 200.0  # ... and a small one
    x[2] = 0  # a blank picture stays blank
    still = {"degrees": 0, "translate": 0, "scale": (1, 1)}
    out = augment(x, AugmentConfig(**still, scans=0.25), torch.Generator().manual_seed(3))
    assert torch.equal(out[3:], augment(x, AugmentConfig(**still), torch.Generator().manual_seed(3))[3:])
    assert torch.equal(out[2], x[2])
    first, small = out[0, 0], out[1, 0]
    assert (first - x[0, 0]).abs().amax() > 50  # changed: fitted to 20 px high, as MNIST's digits are
    assert torch.allclose(first, small, atol=1.0)  # one bitmap for both: the scanner fits the ink to its box
    rows = (first > 20).any(1).nonzero()
    assert rows.max() - rows.min() + 1 == 20 and abs(float(first.amax()) - 200.0) < 1e-3
    centre = (first.sum(0) * torch.arange(28.0)).sum() / first.sum()
    assert abs(float(centre) - 13.5) <= 0.5


@pytest.mark.realdata
def test_scans_match_what_predict_makes_of_scanned_validation_digits(mnist_data_dir):
    """``scanned`` is predict's reading of an 8x8 block-count scan (tests/people.block_counts), done
    on a batch: on 100 validation digits within 2% of full scale per pixel on average (the speck
    and marker cleaning it leaves out), each digit within 10%."""
    from mnistctl.data.splits import scanned
    from mnistctl.images.prepare import prepare_image
    from people import block_counts

    images, _ = load_split(DataConfig(), "val", mnist_data_dir)
    digits = images[:100]
    batched = scanned(digits.float()[:, None])[:, 0].numpy()
    one_by_one = np.array([prepare_image(block_counts(d)) for d in digits.numpy()]).astype(np.float32)
    per_digit = np.abs(batched - one_by_one).mean((1, 2)) / 255
    assert per_digit.mean() < 0.02 and per_digit.max() < 0.1, (per_digit.mean(), per_digit.max())


@pytest.mark.realdata
def test_scans_in_a_bolder_pen_match_predicts_reading_of_such_scans(mnist_data_dir):
    """--scan-pens: ``scanned`` with ``pens`` grows the two-level ink by that many pixels on each side
    before the bitmap is made, as predict reads a scan of a digit written that much bolder: on 100
    validation digits, 90 at least within 10% of full scale per pixel and the median within 2% (the
    rest are bold digits reaching the picture's corners, whose paper predict takes for the ink); 0 is
    the digit as written, and the draw in ``augment`` touches only the scans."""
    import torch.nn.functional as F

    from mnistctl.data.splits import scanned
    from mnistctl.images.prepare import prepare_image
    from people import block_counts

    images, _ = load_split(DataConfig(), "val", mnist_data_dir)
    digits = images[:100].float()[:, None]
    for pen in (1, 2):
        batched = scanned(digits, torch.full((100,), pen))[:, 0].numpy()
        bolder = F.max_pool2d((digits >= 100).float(), 2 * pen + 1, stride=1, padding=pen)[:, 0] > 0
        one_by_one = np.array([prepare_image(block_counts(m)) for m in bolder.numpy()]).astype(np.float32)
        per_digit = np.abs(batched - one_by_one).mean((1, 2)) / 255
        assert np.median(per_digit) < 0.02 and (per_digit < 0.1).sum() >= 90, (pen, np.sort(per_digit)[-12:])
        plain = scanned(digits)[:, 0].numpy()
        assert np.abs(batched - plain).mean() / 255 > 0.03  # not the digit as written
    assert torch.equal(scanned(digits, torch.zeros(100, dtype=torch.long)), scanned(digits))
    still = {"degrees": 0, "translate": 0, "scale": (1, 1), "scans": 0.5}
    a = augment(digits, AugmentConfig(**still), torch.Generator().manual_seed(1))
    b = augment(digits, AugmentConfig(**still, scan_pens=0.9), torch.Generator().manual_seed(1))
    assert torch.equal(a[50:], b[50:])
    changed = (a[:50] - b[:50]).abs().amax((1, 2, 3)) > 1
    assert 30 <= int(changed.sum()) <= 50, int(changed.sum())


@pytest.mark.realdata
def test_real_mnist_splits(mnist_data_dir):
    cfg = DataConfig()
    train_x, train_y = load_split(cfg, "train", mnist_data_dir)
    val_x, val_y = load_split(cfg, "val", mnist_data_dir)
    test_x, test_y = load_split(cfg, "test", mnist_data_dir)
    assert train_x.shape == (55000, 28, 28) and val_x.shape == (5000, 28, 28)
    assert test_x.shape == (10000, 28, 28) and train_x.dtype == torch.uint8
    # label counts as published with the data
    counts = torch.bincount(torch.cat([train_y, val_y]), minlength=10).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(test_y, minlength=10).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert 0.12 < float(train_x.float().mean() / 255) < 0.14  # MNIST's mean is 0.1307


@pytest.mark.realdata
def test_sample_digits_is_seeded(mnist_data_dir):
    a = sample_digits(DataConfig(), "test", 9, seed=3, data_dir=mnist_data_dir)
    b = sample_digits(DataConfig(), "test", 9, seed=3, data_dir=mnist_data_dir)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[0].shape == (9, 28, 28)
