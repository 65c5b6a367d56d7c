"""`predict` and the built-in model: people's images, formats, bad input, pass-through."""

from __future__ import annotations

import csv
import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from typer.testing import CliRunner

from conftest import REPO, missing
from mnistctl import checkpoint
from mnistctl.cli.commands import app
from mnistctl.config import DataConfig
from mnistctl.data.splits import load_split
from mnistctl.errors import ImageError, MnistctlError
from mnistctl.images import fit
from mnistctl.images.pixels import border, pieces
from mnistctl.images.prepare import prepare
from mnistctl.inference.classifier import TorchClassifier, prepare_image
from mnistctl.inference.files import predict_files
from people import STYLES, block_counts, draw_style, make_corpus, make_people_set, number_picture

runner = CliRunner()
ASSETS = REPO / "assets"
PAINT_4 = ASSETS / "digit-4-paint.png"


@pytest.fixture(scope="module")
def shipped() -> TorchClassifier:
    return TorchClassifier(checkpoint.load_or_pretrained(None))


def _predict(paths, shipped, **kw):
    return predict_files([str(p) for p in paths], shipped, **kw)


def _label(r) -> str | None:
    return r.prediction.label if r.prediction else None


def test_shipped_model_is_small_and_self_describing(shipped):
    path = checkpoint.pretrained_path()
    assert path.stat().st_size <= 2_000_000
    ckpt = shipped.checkpoint
    assert ckpt.dataset == "mnist" and not ckpt.resumable and ckpt.model_config.nf == 40  # a --preset best run
    # at least 99.6% (issue #36's floor for a built-in model chosen on other writers' digits: 99.65%)
    assert ckpt.test_accuracy >= 0.996 and shipped.source.startswith("built-in model")
    # trained with other hands beside MNIST's, and MNIST's digits as 8x8 scans (docs/accuracy.md: "The built-in model")
    assert ckpt.data_config.extra_share == 0.1 and ckpt.data_config.extra_images and ckpt.train_config.scans == 0.1


@pytest.mark.slow
@pytest.mark.realdata
def test_shipped_model_scores_on_the_real_test_set(mnist_data_dir):
    result = runner.invoke(app, ["evaluate", "--json", "--data-dir", str(mnist_data_dir)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["checkpoint"] is None and report["model"].startswith("built-in model") and report["images"] == 10000
    assert report["classes"] == [str(d) for d in range(10)]
    assert report["accuracy"] >= 0.996  # 99.66% where it was measured; other CPUs may differ by an image


@pytest.mark.slow
@pytest.mark.realdata
def test_people_style_digits_are_read_right(tmp_path, mnist_data_dir, shipped):
    """Dark ink on white, scaled up, off-centre, RGB/RGBA/transparent/JPEG, noisy grey paper."""
    images, labels = load_split(DataConfig(), "test", mnist_data_dir)
    pick = torch.randperm(10000, generator=torch.Generator().manual_seed(0))[:400]
    items = make_people_set(images[pick].numpy(), labels[pick].numpy(), tmp_path)
    assert {p.suffix for p, _ in items} == {".png", ".jpg"}
    with Image.open(items[0][0]) as img:
        assert max(img.size) >= 150
    results = _predict([p for p, _ in items], shipped)
    assert all(r.error is None for r in results)
    accuracy = np.mean([r.prediction.index == label for r, (_, label) in zip(results, items)])
    assert accuracy >= 0.98, accuracy


@pytest.mark.realdata
def test_mnist_digits_pass_through_unchanged(tmp_path, mnist_data_dir, shipped):
    """A real test digit saved as PNG gets exactly the prediction evaluate gives it."""
    images, _ = load_split(DataConfig(), "test", mnist_data_dir)
    paths = []
    for i in range(300):
        paths.append(tmp_path / f"{i:03d}.png")
        Image.fromarray(images[i].numpy()).save(paths[-1])
    results = _predict(paths, shipped)
    for r, img in zip(results, images[:300]):
        assert np.array_equal(r.image, img.numpy())
    expected = shipped.probabilities(images[:300].numpy())
    assert [r.prediction.index for r in results] == expected.argmax(1).tolist()
    # read once, as evaluate reads it: not also widened, as a redrawn picture is
    assert not any(r.redrawn for r in results)
    assert np.allclose([r.prediction.probabilities for r in results], expected, atol=1e-6)


def _bit16(path: Path) -> Path:
    grey = np.asarray(Image.open(PAINT_4).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey).save(path)  # 16-bit grey PNG
    return path


def _float_tiff(path: Path, scale: float) -> Path:
    grey = np.asarray(Image.open(PAINT_4).convert("L"), dtype=np.float32) * scale
    Image.fromarray(grey, "F").save(path)  # 32-bit floating-point grey
    return path


@pytest.mark.parametrize("name, make", [
    ("png-rgb", lambda p: Image.open(PAINT_4).convert("RGB").save(p.with_suffix(".png"))),
    ("jpeg", lambda p: Image.open(PAINT_4).convert("RGB").save(p.with_suffix(".jpg"), quality=70)),
    ("bmp", lambda p: Image.open(PAINT_4).save(p.with_suffix(".bmp"))),
    ("gif", lambda p: Image.open(PAINT_4).convert("P").save(p.with_suffix(".gif"))),
    ("tiff", lambda p: Image.open(PAINT_4).save(p.with_suffix(".tiff"))),
    ("webp", lambda p: Image.open(PAINT_4).save(p.with_suffix(".webp"), quality=80)),
    ("palette", lambda p: Image.open(PAINT_4).convert("P", palette=Image.Palette.ADAPTIVE).save(p.with_suffix(".png"))),
    ("grey-alpha", lambda p: Image.open(PAINT_4).convert("LA").save(p.with_suffix(".png"))),
    ("16-bit", lambda p: _bit16(p.with_suffix(".png"))),
    ("float-0-1", lambda p: _float_tiff(p.with_suffix(".tiff"), 1 / 255)),  # scientific data: 0 to 1
    ("float-0-255", lambda p: _float_tiff(p.with_suffix(".tiff"), 1.0)),
    ("white-on-black", lambda p: Image.eval(Image.open(PAINT_4).convert("L"), lambda v: 255 - v).save(
        p.with_suffix(".png"))),
])
def test_formats_and_modes(tmp_path, shipped, name, make):
    make(tmp_path / name)
    [path] = list(tmp_path.iterdir())
    [r] = _predict([path], shipped)
    assert r.error is None and _label(r) == "4", (name, r.error, _label(r))


def test_ink_on_mid_grey_paper_and_under_a_vignette_is_told_from_the_paper(tmp_path, shipped):
    """Dark ink on grey paper, chalk on a grey board, and a photo whose corners a vignette darkens:
    a border near mid-grey once decided alone which was ink (the paper was read as the digit)."""
    ink = np.asarray(Image.open(PAINT_4).convert("L").filter(ImageFilter.GaussianBlur(2)), np.float32) / 255
    ink = 1 - ink  # 1 on the strokes, soft at their edges
    h, w = ink.shape
    yy, xx = np.mgrid[0:h, 0:w]
    shade = 1 - 0.7 * (np.hypot(yy / h - 0.5, xx / w - 0.5) / 0.7) ** 2  # the corners at about 30%
    pictures = {"grey-paper": 120 * (1 - ink) + 15 * ink, "chalk": 105 * (1 - ink) + 235 * ink,
                "vignette": (205 * (1 - ink) + 30 * ink) * shade}
    paths = []
    for name, grey in {"white-paper": 245 * (1 - ink) + 15 * ink, **pictures}.items():
        paths.append(tmp_path / f"{name}.png")
        Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).save(paths[-1])
    plain, *results = _predict(paths, shipped)
    assert [_label(r) for r in results] == ["4"] * len(pictures)
    # the model sees the same digit as on white paper (not the paper around a dark digit)
    assert all(np.abs(r.image.astype(int) - plain.image).mean() < 12 for r in results), \
        [np.abs(r.image.astype(int) - plain.image).mean() for r in results]


def test_transparent_background_counts_as_background(tmp_path, shipped):
    grey = np.asarray(Image.open(PAINT_4).convert("L"))
    rgba = np.zeros(grey.shape + (4,), np.uint8)  # black ink, transparent elsewhere
    rgba[..., 3] = 255 - grey
    Image.fromarray(rgba, "RGBA").save(tmp_path / "ink.png")
    [r] = _predict([tmp_path / "ink.png"], shipped)
    assert _label(r) == "4"


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _bad_inputs(d: Path) -> dict[str, tuple[str, str]]:
    (d / "notes.png").write_text("this is not an image")
    (d / "empty.png").write_bytes(b"")
    good = d / "good.png"
    Image.open(PAINT_4).save(good)
    (d / "truncated.png").write_bytes(good.read_bytes()[:200])
    Image.new("RGB", (300, 200), "white").save(d / "blank.png")
    (d / "bomb.png").write_bytes(_png_header(100_000, 100_000))
    frames = [Image.open(PAINT_4).convert("P"), Image.new("P", (420, 320))]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].convert("L").save(d / "pages.tiff", save_all=True, append_images=[frames[0].convert("L")])
    (d / "empty-dir").mkdir()
    return {
        str(d / "missing.png"): ("missing.png", "no such file"),
        str(d / "notes.png"): ("notes.png", "not an image"),
        str(d / "empty.png"): ("empty.png", "empty file"),
        str(d / "truncated.png"): ("truncated.png", "truncated or corrupt"),
        str(d / "blank.png"): ("blank.png", "no ink found"),
        str(d / "bomb.png"): ("bomb.png", "image too large"),
        str(d / "anim.gif"): ("anim.gif", "animated or multi-page"),
        str(d / "pages.tiff"): ("pages.tiff", "animated or multi-page"),
        str(d / "empty-dir"): ("empty-dir", "holds no image files"),
        str(d / "*.nothing"): ("*.nothing", "no file matches"),
    }


def test_bad_inputs_fail_one_by_one_and_never_the_batch(tmp_path, shipped):
    bad = _bad_inputs(tmp_path)
    specs = [str(tmp_path / "good.png"), *bad]
    results = _predict(specs, shipped)
    assert results[0].error is None and _label(results[0]) == "4"
    for r in results[1:]:
        _, message = bad[r.path]
        assert r.error is not None and message in r.error, (r.path, r.error)

    out = runner.invoke(app, ["predict", "--json", *specs])
    assert out.exit_code == 1 and "Traceback" not in out.output
    doc = json.loads(out.stdout)
    assert len(doc) == len(specs) and doc[0]["prediction"] == "4" and doc[0]["error"] is None
    assert set(doc[0]["probabilities"]) == {str(i) for i in range(10)}
    assert abs(sum(doc[0]["probabilities"].values()) - 1) < 1e-4 and len(doc[0]["top3"]) == 3
    assert all(o["error"] for o in doc[1:])

    table = runner.invoke(app, ["predict", *specs])
    assert table.exit_code == 1 and "10 of 11 images could not be read" in table.stderr
    assert "no ink found" in table.stdout and "image too large" in table.stdout


def test_directories_globs_and_all_good_exit_zero(tmp_path, shipped):
    for i in range(3):
        Image.open(PAINT_4).save(tmp_path / f"{i}.png")
    (tmp_path / "readme.txt").write_text("not an image, and not picked up from a directory")
    results = _predict([tmp_path, str(tmp_path / "*.png")], shipped)
    assert [Path(r.path).name for r in results] == ["0.png", "1.png", "2.png"] * 2
    out = runner.invoke(app, ["predict", str(tmp_path)])
    assert out.exit_code == 0 and out.stdout.count(" 4 ") >= 3


def test_chunks_classified_beside_reading_keep_every_file_with_its_own_result(tmp_path, mnist_data_dir, shipped,
                                                                              monkeypatch):
    """A directory is read in chunks, each classified in a second thread while the next is read:
    every file must still get its own prediction (and a bad file its error), across the chunks."""
    import mnistctl.inference.files as predict_module

    images, labels = load_split(DataConfig(), "test", mnist_data_dir)
    for i in range(11):
        Image.fromarray(images[i].numpy()).save(tmp_path / f"d{i:02d}.png")
    (tmp_path / "d05.png").write_text("not an image")  # an unreadable file in the middle of a chunk
    (tmp_path / "sub.png").mkdir()  # a directory with an image's name is not an input
    one_by_one = [predict_files([str(p)], shipped)[0] for p in sorted(tmp_path.glob("d*.png"))]
    monkeypatch.setattr(predict_module, "CHUNK", 3)
    results = predict_files([str(tmp_path)], shipped)
    assert [Path(r.path).name for r in results] == [f"d{i:02d}.png" for i in range(11)]
    assert results[5].prediction is None and "not an image" in results[5].error
    for i, (r, alone) in enumerate(zip(results, one_by_one)):
        if i != 5:
            assert r.error is None and r.prediction.index == alone.prediction.index == int(labels[i]), i
            assert np.allclose(r.prediction.probabilities, alone.prediction.probabilities, atol=1e-5)
    from mnistctl.images.prepare import ImageError, read_image
    with pytest.raises(ImageError, match="not a file"):
        read_image(tmp_path / "sub.png")


def test_no_preprocess_and_saved_inputs(tmp_path, shipped):
    [raw] = _predict([PAINT_4], shipped, preprocess=False)
    [prepared] = _predict([PAINT_4], shipped)
    assert raw.image.shape == prepared.image.shape == (28, 28)
    assert raw.image.mean() > 128 and prepared.image.mean() < 64  # as-is: white paper; prepared: black
    out_dir = tmp_path / "inputs"
    result = runner.invoke(app, ["predict", str(PAINT_4), str(PAINT_4), "--save-inputs", str(out_dir), "--show"])
    assert result.exit_code == 0, result.output
    saved = sorted(p.name for p in out_dir.iterdir())
    assert saved == ["digit-4-paint-2.png", "digit-4-paint.png"]
    assert np.array_equal(np.asarray(Image.open(out_dir / "digit-4-paint.png")), prepared.image)
    assert "@" in result.stdout and "\u2580" not in result.stdout and "built-in model" in result.stdout


def test_preprocessing_centres_the_ink_like_mnist():
    img = prepare_image(PAINT_4)
    ys, xs = np.nonzero(img > 0)
    assert ys.max() - ys.min() + 1 <= 20 and xs.max() - xs.min() + 1 <= 20
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 == 20  # longer side fills the box
    mass = img.astype(float)
    cy = (mass.sum(1) * np.arange(28)).sum() / mass.sum()
    cx = (mass.sum(0) * np.arange(28)).sum() / mass.sum()
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1


def test_predict_examples_without_training_or_download(tmp_path):
    """The README's example: straight after install, no data needed."""
    env = {"MNISTCTL_DATA_DIR": str(tmp_path / "no-data"), "PATH": "", "HOME": str(tmp_path),
           "COLUMNS": "120"}
    result = subprocess.run([sys.executable, "-m", "mnistctl", "predict", "--json",
                             *sorted(str(p) for p in ASSETS.glob("digit-*"))],
                            capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    got = {Path(o["path"]).name: o["prediction"] for o in json.loads(result.stdout)}
    assert got == {name: name.split("-")[1] for name in got} and len(got) == 4
    assert not (tmp_path / "no-data").exists()


def test_exported_checkpoints_cannot_be_resumed(tmp_path):
    result = runner.invoke(app, ["train", "--resume", str(checkpoint.pretrained_path())])
    assert result.exit_code == 1 and "inference-only" in result.stderr


def test_array_first_api_gives_what_predict_gives(tmp_path, shipped):
    """Path, bytes, stream and PIL image prepare to the same 28x28 input, and classify() on arrays
    marked as redrawn gives the predictions predict_files gives for the files."""
    data = PAINT_4.read_bytes()
    with Image.open(PAINT_4) as img:
        from_pil = prepare_image(img)
    inputs = [prepare_image(PAINT_4), prepare_image(data), prepare_image(io.BytesIO(data)), from_pil]
    assert all(np.array_equal(inputs[0], x) for x in inputs[1:])
    assert inputs[0].shape == (28, 28) and inputs[0].dtype == np.uint8
    paths = sorted(ASSETS.glob("digit-*"))
    prepared = [prepare(p) for p in paths]
    assert [p.redrawn for p in prepared] == ["mnist" not in p.name for p in paths]  # all but the MNIST digit
    batch = np.stack([p.image for p in prepared])
    redrawn = np.array([p.redrawn for p in prepared])
    from_arrays = shipped.classify(batch, redrawn)
    from_files = _predict(paths, shipped)
    assert [p.label for p in from_arrays] == [_label(r) for r in from_files] == [p.name.split("-")[1] for p in paths]
    assert all(abs(a.confidence - r.prediction.confidence) < 1e-6 for a, r in zip(from_arrays, from_files))
    probs = shipped.probabilities(batch)
    assert probs.shape == (4, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert shipped.classify(torch.from_numpy(batch), redrawn)[3].label == from_arrays[3].label  # tensors too
    widened = shipped.probabilities(fit.widen(batch))
    assert np.allclose([a.probabilities for a in from_arrays], np.where(redrawn[:, None], (probs + widened) / 2, probs),
                       atol=1e-6)
    once = shipped.classify(batch, [False] * 4)  # marked as not redrawn: read once, as classify(batch) reads it
    assert np.allclose([a.probabilities for a in once], probs, atol=1e-6)
    assert [a.probabilities for a in once] == [a.probabilities for a in shipped.classify(batch)]
    with pytest.raises(MnistctlError, match="marks 3 images, but the batch holds 4"):
        shipped.classify(batch, [True] * 3)


def test_widen_gives_every_stroke_a_soft_rim_of_half_its_brightness():
    """fit.widen: a pixel next to a stroke becomes half as bright as its brightest
    four-neighbour (never darker than it was); diagonals, blank pictures and the dtype are kept."""
    x = np.zeros((2, 28, 28), np.uint8)
    x[0, 10, 10], x[0, 20, 5:8], x[0, 20, 8] = 255, 200, 120
    x[0, 0, 27] = 100  # at the border: its rim is cut off by the edge, not wrapped round
    out = fit.widen(x)
    assert out.dtype == np.uint8 and out.shape == x.shape
    assert not out[1].any()  # blank stays blank
    assert (out >= x).all()
    assert out[0, 10, 10] == 255 and out[0, 9, 10] == out[0, 11, 10] == out[0, 10, 9] == out[0, 10, 11] == 128
    assert out[0, 9, 9] == 0  # the diagonal: not a four-neighbour
    assert out[0, 20, 8] == 120 and out[0, 20, 9] == 60 and out[0, 21, 6] == 100 and out[0, 19, 8] == 60
    assert out[0, 1, 27] == out[0, 0, 26] == 50 and out[0, 27, 27] == out[0, 0, 0] == 0
    assert np.array_equal(fit.widen(x[0]), out[0])  # one image or a batch
    assert (out > 0).sum() == (x > 0).sum() + 4 + 10 + 2


@pytest.mark.slow
@pytest.mark.realdata
def test_people_style_corpus_every_style(tmp_path, mnist_data_dir, shipped):
    """150 real test digits drawn in each of 20 styles (the same digits in every style): at least
    97% of each style and 99% of all read right (docs/preparation.md: "What reads well"), with fewer
    mistakes than reading each prepared input once, without the widened second look. (The floor
    was 98% for each style; the built-in model of the morning of 2026-12-07 read 99.63% of all, the one
    before 99.30% with its 1-2 px pen at 146 of 150; the evening's 99.37%, its 1-2 px pen 146 of 150;
    the night's 99.53%, the same pen 146 of 150. A candidate that read that pen 145 of 150 was not taken.)"""
    images, labels = load_split(DataConfig(), "test", mnist_data_dir)
    perm = np.random.default_rng(100).permutation(10000)
    corpus = make_corpus(images.numpy()[perm], labels.numpy()[perm], tmp_path, per_style=150, seed=0)
    assert set(corpus) == set(STYLES) and len(STYLES) >= 20
    right = total = once_right = 0
    scores = {}
    for style, items in corpus.items():
        results = _predict([p for p, _ in items], shipped)
        assert all(r.error is None for r in results), (style, [r.error for r in results if r.error][:3])
        assert all(r.redrawn for r in results)
        truth = np.array([label for _, label in items])
        good = sum(r.prediction.index == label for r, label in zip(results, truth))
        once_right += int((shipped.probabilities(np.stack([r.image for r in results])).argmax(1) == truth).sum())
        scores[style] = good / len(items)
        right, total = right + good, total + len(items)
    assert all(acc >= 0.97 for acc in scores.values()), scores
    assert right / total >= 0.99, (right / total, scores)
    assert total - right < total - once_right, (total - right, total - once_right)


@pytest.mark.realdata
def test_the_noise_filter_leaves_the_strokes_of_small_drawings(mnist_data_dir, monkeypatch):
    """The 3x3 median that quiets photo noise would also eat into the 1-2 px strokes of a digit
    drawn on a 32x32 canvas; it must not be used where it would take a noticeable part of them.
    300 training digits drawn that way keep at least 85% of the ink they have without it (the filter
    once took up to 21%)."""
    from mnistctl.images import prepare as preprocess

    images, _ = load_split(DataConfig(), "train", mnist_data_dir)
    rng = np.random.default_rng(0)
    drawings = [draw_style("canvas-32", digit, rng)[0] for digit in images.numpy()[:300]]
    filtered = np.array([prepare_image(img).sum(dtype=np.float64) for img in drawings])
    monkeypatch.setattr(preprocess, "MEDIAN_KEEP", float("inf"))  # never filter
    plain = np.array([prepare_image(img).sum(dtype=np.float64) for img in drawings])
    assert (filtered / plain).min() >= 0.85, np.sort(filtered / plain)[:5]


@pytest.mark.realdata
def test_digits_scanned_at_8x8_are_enlarged_before_their_ink_is_found(mnist_data_dir, shipped, monkeypatch):
    """An 8x8 picture of 0-16 block counts (how an old scanner made low-resolution digits) is
    enlarged before its ink is found: its grey edges are most of each stroke. 400 validation digits
    (the built-in model saw training digits as scans) so are read at least 96% right (97.25%; the
    evening's built-in model 98.0%), and no worse than without by more than 1.5 points (97.25%: a
    model trained with --low-res and scans reads MNIST's own scans as well either way; the
    afternoon's built-in model 97.75% against 96.75%, the morning's 95.5% against 96.75%). Where
    enlarging pays is other writers' scans: on the writer-shift check's (benchmarks/writers.py)
    91.6% -> 92.8% with the afternoon's model, 86.8% -> 89.3% with the morning's."""
    from mnistctl.images import prepare as preprocess

    images, labels = load_split(DataConfig(), "val", mnist_data_dir)
    pictures = [block_counts(digit) for digit in images.numpy()[:400]]
    truth = labels.numpy()[:400]
    assert pictures[0].size == (8, 8)

    def accuracy(numbers: str) -> float:
        results = shipped.predict(pictures, numbers=numbers)
        assert all(r.number is None and r.error is None for r in results)  # (auto: none is read as a number)
        return float(np.mean([r.prediction.index == t for r, t in zip(results, truth)]))

    enlarged = accuracy("auto")
    monkeypatch.setattr(preprocess, "SMALL", 0)
    assert enlarged >= 0.96 and enlarged >= accuracy("never") - 0.015



@pytest.mark.realdata
def test_a_bold_pens_8x8_scan_keeps_its_strokes(mnist_data_dir, shipped):
    """A bold pen's 8x8 scan, enlarged, is all stroke, and a marker's thinning wore its shape away (a
    6's loop filled, a 2 a bar): a tiny picture is not thinned, as the training's scans are not.
    The first 400 validation digits written 1.5 px (at 28 px) bolder, as 8x8 scans: 89.75% before,
    96.25% now (1,000 others: 89.8% -> 95.5%; with the usual pen 98.0% -> 98.2%; the writer-shift check's
    scans 93.3% either way)."""
    import cv2

    images, labels = load_split(DataConfig(), "val", mnist_data_dir)
    pen = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (13, 13))  # 6 px round at 4x: 1.5 px at 28
    pictures = [block_counts(cv2.dilate((cv2.resize(digit, (112, 112)) > 127).astype(np.uint8), pen) > 0)
                for digit in images.numpy()[:400]]
    results = shipped.predict(pictures)
    right = np.mean([r.prediction.index == t for r, t in zip(results, labels.numpy()[:400])])
    assert right >= 0.935, right


def test_a_small_picture_enlarged_is_read_at_its_own_size(tmp_path, shipped):
    """An 8x8 scan enlarged without smoothing (each pixel a block, as nearest-neighbour scaling and
    pixel-art editors make it), by any whole factor, is read exactly as the 8x8 scan: the same input,
    its box in the enlarged picture's pixels (to a block); by a factor that is not whole, or shown
    in a figure's margins, it is read at about 8x8 (and right). Enlarged smoothly, it is read at 8x8 too:
    the same digit, and not unsure because its digit fills the picture. An MNIST digit enlarged in
    blocks is the MNIST digit again. Photos and drawings are read as they are. (MNIST validation scans
    enlarged so read 95.2-97.2% in blocks and 97.7% smoothly before, the latter 64-84% unsure.)"""
    from mnistctl.images.native import native
    from mnistctl.images.prepare import decode

    def png(picture: Image.Image) -> bytes:
        out = io.BytesIO()
        picture.save(out, "PNG")
        return out.getvalue()

    three = np.asarray(Image.open(ASSETS / "digit-3-mnist.png"))
    scan = block_counts(three)
    small = shipped.predict([scan])[0]
    for factor in (2, 5, 8, 32):
        big = scan.resize((8 * factor, 8 * factor), Image.Resampling.NEAREST)
        [got] = shipped.predict([big])
        assert np.array_equal(got.image, small.image) and got.text == small.text == "3"
        assert all(abs(a - factor * b) <= factor for a, b in zip(got.box, small.box)) and not got.unsure
    # blocks of a size that is not whole, not square, or on a grid with margins round it (matplotlib)
    blocky = scan.resize((220, 300), Image.Resampling.NEAREST)
    for picture in (scan.resize((100, 100), Image.Resampling.NEAREST), blocky,
                    Image.fromarray(np.pad(np.asarray(blocky), 37, constant_values=255))):
        d = decode(png(picture))
        assert max(d.grey.shape) < 16
        [got] = shipped.predict([picture])
        assert got.text == "3" and not got.unsure, got.reasons
    smooth = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)
    for size, how in zip((64, 200, 256), smooth):
        d = decode(png(scan.resize((size, size), how)))
        assert max(d.grey.shape) < 64 and d.scale * max(d.grey.shape) == size
        [got] = shipped.predict([scan.resize((size, size), how)])
        assert got.text == "3" and not got.unsure, got.reasons
    mnist = Image.fromarray(three).resize((280, 280), Image.Resampling.NEAREST)
    assert np.array_equal(prepare_image(mnist), three)  # read as the MNIST digit it is
    mnist.save(tmp_path / "big.png")
    d = decode(tmp_path / "big.png")
    assert d.grey.shape == (28, 28) and d.scale == 10 and d.raw is not None
    for same in (Image.open(ASSETS / "digit-7-photo.jpg"), Image.open(PAINT_4),
                 Image.fromarray(np.pad(np.asarray(mnist), ((0, 0), (1, 0)), constant_values=0))):
        d = decode(png(same))
        assert native(d) is d  # neither in blocks on one grid nor smooth: read as it is


def test_an_array_plotted_with_axes_is_read_inside_its_frame(shipped):
    """matplotlib's ``imshow`` of an 8x8 scan, saved with its axes (a frame, ticks and labels round
    the blocks; a title or a colour bar beside; dark on light or light on dark), is read at 8x8 inside
    the frame, its box in the figure's pixels: 200 validation scans so 90.5% -> 97.0% (small figure),
    light on dark 18% -> 97.0%; an MNIST digit so, or in a figure's margins without axes, too. A digit
    drawn in a box, and a plain drawing, are read as they are."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mnistctl.images.native import native
    from mnistctl.images.prepare import decode

    three = np.asarray(Image.open(ASSETS / "digit-3-mnist.png"))
    counts = np.round((255 - np.asarray(block_counts(three), np.float32)) * 16 / 255)
    small = shipped.predict([block_counts(three)])[0]
    for cmap, extra in (("gray_r", None), ("gray", "colorbar"), ("gray_r", "title")):
        figure, axes = plt.subplots(figsize=(3, 3))
        shown = axes.imshow(counts, cmap=cmap)
        if extra == "colorbar":
            figure.colorbar(shown)
        elif extra == "title":
            axes.set_title("a digit")
        out = io.BytesIO()
        figure.savefig(out, format="png")
        plt.close(figure)
        d = decode(out.getvalue())
        level = d.grey if cmap == "gray" else 1 - d.grey
        assert d.grey.shape == (8, 8) and np.abs(np.round(level * 16) - counts).max() <= 1, (cmap, extra)
        [got] = shipped.predict([out.getvalue()])
        assert got.text == small.text == "3" and not got.unsure, (cmap, extra, got.reasons)
        frame = Image.open(io.BytesIO(out.getvalue())).convert("L")
        x0, y0, x1, y1 = got.box  # on the blocks, inside the frame: no tick label, no margin
        assert 0.25 * frame.width < (x0 + x1) / 2 < 0.75 * frame.width and y0 > 0.05 * frame.height
    # an MNIST digit shown so (light on black), with its axes or without them in white margins: before,
    # the black square was taken for the ink (200 validation digits: 14.5-64.5% -> 99.0-99.5%)
    for axis in ("on", "off"):
        figure, axes = plt.subplots(figsize=(3, 3))
        axes.imshow(three, cmap="gray")
        axes.axis(axis)
        out = io.BytesIO()
        figure.savefig(out, format="png")
        plt.close(figure)
        assert max(decode(out.getvalue()).grey.shape) <= 28
        [got] = shipped.predict([out.getvalue()])
        assert got.text == "3" and not got.unsure, (axis, got.reasons)
    boxed = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(boxed).rectangle((20, 20, 179, 179), outline=0, width=3)
    ImageDraw.Draw(boxed).line([(70, 50), (130, 50), (90, 150)], fill=0, width=9)
    for same in (boxed, Image.open(PAINT_4)):
        out = io.BytesIO()
        same.save(out, "PNG")
        d = decode(out.getvalue(), preprocess=False)
        assert native(d) is d


def test_a_28x28_digit_filling_its_picture_is_fitted_as_mnists_were(shipped):
    """Light ink on black at 28x28 is taken as an MNIST digit as it is -- unless its ink spans more than
    MNIST's 20-px box (none of MNIST's 60,000 training and validation digits does): an 8x8 scan
    enlarged to 28x28 fills all of it, and read as given it was misread (600 validation scans: 96.3%,
    98.0% fitted). It is fitted into the box as a picture is, and read with two looks."""
    three = np.asarray(Image.open(ASSETS / "digit-3-mnist.png"))
    filling = ImageOps.invert(block_counts(three)).resize((28, 28), Image.Resampling.BILINEAR)
    prepared = prepare(filling)
    ys, xs = np.nonzero(prepared.image)
    assert prepared.redrawn and max(np.ptp(ys), np.ptp(xs)) + 1 <= 22
    [got] = shipped.predict([filling])
    assert got.text == "3" and got.redrawn
    for mnist in (three, np.roll(three, 3, axis=1)):  # an MNIST digit, even off-centre, as it is
        assert not prepare(Image.fromarray(mnist)).redrawn
        assert np.array_equal(prepare_image(Image.fromarray(mnist)), mnist)


@pytest.mark.realdata
def test_a_bold_scan_reaching_its_corners_keeps_its_paper(mnist_data_dir):
    """A bold pen's 8x8 scan reaches the corners of its picture, and the corners' median took the ink
    for the paper (148 of 3,000 validation digits 2 px bolder). Blank paper is the picture's lightest
    (or darkest) level exactly, and the extreme more corners show is the paper: 300 such scans and
    their negatives (light ink on dark) have their paper found, at least 296 of each (27 of 3,000
    missed it: a digit covering two corners wholly)."""
    import torch.nn.functional as F

    from mnistctl.images.pixels import enlarge
    from mnistctl.images.prepare import _as_ink

    images, _ = load_split(DataConfig(), "val", mnist_data_dir)
    bold = F.max_pool2d((images[:300].float()[:, None] >= 100).float(), 5, stride=1, padding=2)[:, 0] > 0
    for negative in (False, True):
        found = 0
        for mask in bold.numpy():
            grey = np.asarray(block_counts(mask), np.float32) / 255
            grey = 1 - grey if negative else grey
            big = enlarge(grey, 8)
            ink = _as_ink(big, corner=8)
            found += np.allclose(ink, 1 - big if not negative else big)  # the ink light, the paper dark
        assert found >= 296, (negative, found)


def test_an_8x8_scan_saved_as_its_block_counts_is_read_as_the_scan(tmp_path, shipped):
    """scikit-learn's 8x8 digits hold block counts 0-16; saved as they are (8-bit, or as floats), the
    picture spans 16 of 255 levels and was taken for a blank one. A tiny picture is stretched to its
    range: it reads as the same scan shown at full contrast. A blank or faint large one is still blank."""
    three = np.asarray(Image.open(ASSETS / "digit-3-mnist.png"))
    scan = block_counts(three)
    counts = np.round((255 - np.asarray(scan, np.float32)) * 16 / 255).astype(np.uint8)  # 16: ink
    Image.fromarray(counts).save(tmp_path / "counts.png")
    Image.fromarray(counts.astype(np.float32), "F").save(tmp_path / "counts.tif")
    full = Image.fromarray((counts.astype(int) * 255 // 16).astype(np.uint8))  # the same at full contrast
    results = predict_files([str(tmp_path / "counts.png"), str(tmp_path / "counts.tif")], shipped)
    expected = shipped.predict([full])[0]
    for r in results:
        assert r.error is None and r.text == expected.text == "3", r.error
        assert np.abs(r.image.astype(int) - expected.image.astype(int)).max() <= 3  # (255 / 16 rounded)
    faint = np.full((100, 100), 120, np.uint8)
    faint[30:70, 45:55] = 130  # a 1 at 4% contrast, 100 px: noise-like, blank as before
    for blank in (np.full((8, 8), 7, np.uint8), faint):
        with pytest.raises(ImageError, match="looks blank"):
            prepare_image(Image.fromarray(blank))


def test_a_bold_digit_filling_a_small_picture_is_still_dark_ink_on_light_paper():
    """A bold 0 scanned at 8x8 touches every edge of its picture: most of its border is ink. The
    corner pixels still say which is the paper, so the ring is the digit, not the paper round it;
    white on black the same; a picture of 64 px or more is not judged by its corners."""
    ring = np.zeros((28, 28), np.uint8)
    yy, xx = np.mgrid[:28, :28]
    r = np.hypot(yy - 13.5, xx - 13.5)
    ring[(r > 4) & (r < 11)] = 255  # a bold 0, its hole small
    scan = block_counts(ring)
    grey = np.asarray(scan)
    assert np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])) < 0.75 * 255  # a dark border
    prepared = prepare_image(scan)
    assert prepared[13:15, 13:15].mean() < 60 and prepared[13, 4:8].mean() > 150  # the hole dark, the ring light
    inverted = prepare_image(Image.fromarray(255 - grey))
    assert np.abs(inverted.astype(int) - prepared.astype(int)).mean() < 10


def test_a_small_photo_with_dark_corners_is_still_judged_by_its_border():
    """The corners decide only for a tiny picture (under 16 px, a scan that is all digit): a 48 px
    photo whose lens darkened its corners keeps its light paper, and its dark 1 is the digit (judged
    by the corners, the paper was read as ink and the 1 became a hole between two bars)."""
    yy, xx = np.mgrid[:48, :48]
    r = np.hypot(yy - 23.5, xx - 23.5) / np.hypot(23.5, 23.5)  # 1 at the corners
    photo = 0.9 - 0.8 * np.clip((r - 0.75) / 0.25, 0, 1) ** 2
    photo[10:38, 22:26] = 0.1  # a dark 1
    prepared = prepare_image(Image.fromarray(np.round(photo * 255).astype(np.uint8)))
    columns = prepared.astype(int).sum(0)
    assert columns[12:16].sum() > 0.7 * columns.sum()  # one bar, in the middle


@pytest.mark.parametrize("orientation, turn", [(3, 180), (6, 90), (8, 270)])
def test_photos_stored_sideways_are_read_as_viewers_show_them(tmp_path, shipped, orientation, turn):
    """Phones store most photos sideways with an EXIF tag saying how to turn them for display."""
    upright = Image.open(ASSETS / "digit-7-photo.jpg").convert("RGB")
    stored = upright.rotate(turn, expand=True)  # counter-clockwise: the tag turns it back
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "phone.png", exif=exif)
    stored.save(tmp_path / "untagged.png")
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    assert np.array_equal(prepare_image(tmp_path / "phone.png"), prepare_image(ASSETS / "digit-7-photo.jpg"))
    assert not np.array_equal(prepare_image(tmp_path / "untagged.png"), prepare_image(tmp_path / "phone.png"))
    stored.save(tmp_path / "bad-exif.png", exif=b"not an EXIF block")  # damaged EXIF: the pixels as stored
    assert np.array_equal(prepare_image(tmp_path / "bad-exif.png"), prepare_image(tmp_path / "untagged.png"))
    out = runner.invoke(app, ["predict", "--json", str(tmp_path / "phone.jpg"), str(tmp_path / "phone.png")])
    assert [r["prediction"] for r in json.loads(out.stdout)] == ["7", "7"], out.output


def test_a_frame_around_the_digit_is_left_out(tmp_path):
    """A form's box or a canvas border in a screenshot; a digit filling its picture is no frame."""
    from PIL import ImageDraw

    from mnistctl.images.around import inside_frame
    from mnistctl.images.prepare import _as_ink, read_image

    four = Image.open(PAINT_4).convert("L")
    boxed = four.copy()
    ImageDraw.Draw(boxed).rectangle((2, 2, boxed.width - 3, boxed.height - 3), outline=0, width=3)
    boxed.save(tmp_path / "boxed.png")
    page = Image.new("RGB", (1400, 1000), (238, 236, 228))  # a large photo of a boxed 4: found at full size
    page.paste(four.convert("RGB").resize((500, 500)), (500, 250))
    ImageDraw.Draw(page).rectangle((30, 30, 1369, 969), outline=(25, 25, 25), width=14)
    page.filter(ImageFilter.GaussianBlur(2)).save(tmp_path / "page.jpg", quality=85)
    zero = Image.new("L", (200, 200), 255)  # a 0 filling its picture: round, no frame
    ImageDraw.Draw(zero).ellipse((2, 2, 197, 197), outline=0, width=12)
    zero.save(tmp_path / "zero.png")
    assert inside_frame(_as_ink(read_image(tmp_path / "zero.png").grey)) is None
    assert inside_frame(_as_ink(read_image(PAINT_4).grey)) is None
    out = runner.invoke(app, ["predict", "--json", *(str(tmp_path / f) for f in ("boxed.png", "page.jpg", "zero.png"))])
    got = [(r["prediction"], r["unsure"]) for r in json.loads(out.stdout)]
    assert got == [("4", False), ("4", False), ("0", False)], out.output


def test_a_photo_of_the_sheet_on_a_table_is_read_without_the_table(tmp_path, monkeypatch):
    """A phone photo of a sheet lying on a desk: the table shows along some sides, darker than the
    paper. It used to be ink (or, filling most of the border, the paper's colour): the 4 was misread."""
    from PIL import ImageDraw

    from mnistctl.images import prepare as preprocess

    four = Image.open(PAINT_4).convert("L").resize((300, 300))
    paper = np.full((640, 520), 228, np.uint8)
    paper[170:470, 110:410] = np.minimum(paper[170:470, 110:410], np.asarray(four))  # the ink only
    sheet = Image.fromarray(paper)
    rng = np.random.default_rng(0)
    names = []
    for n, (table_tone, sides) in enumerate([(70, "left bottom"), (120, "top right"), (40, "left top right")]):
        w, h = 700, 760
        table = np.clip(table_tone + 12 * np.sin(np.arange(h) / 4.0)[:, None] + rng.normal(0, 4, (h, w)), 0, 255)
        photo = Image.fromarray(table.astype(np.uint8), "L")
        x = 150 if "left" in sides else -10
        y = 110 if "top" in sides else -10
        if "right" not in sides:
            x = w - 520 + 10
        if "bottom" in sides:
            y = 20
        photo.paste(sheet, (x, y))
        photo = photo.rotate((3, 0, -14)[n], resample=Image.Resampling.BILINEAR, fillcolor=table_tone).convert("RGB")
        photo.save(tmp_path / f"desk-{n}.jpg", quality=85)
        names.append(f"desk-{n}.jpg")
    # and what must not be taken for a table: a frame of ink all around, a digit touching its edge, a fat
    # white digit on black
    framed = Image.open(PAINT_4).convert("L")
    ImageDraw.Draw(framed).rectangle((0, 0, framed.width - 1, framed.height - 1), outline=0, width=6)
    framed.save(tmp_path / "framed.png")
    seven = Image.new("L", (200, 260), 255)  # a tightly cropped 7: its bar is the whole top side
    ImageDraw.Draw(seven).line([(0, 8), (199, 8)], fill=0, width=16)
    ImageDraw.Draw(seven).line([(190, 8), (70, 259)], fill=0, width=16)
    seven.save(tmp_path / "seven.png")
    eight = Image.new("L", (240, 300), 0)  # a fat white 8 on black: light, large, its holes dark
    ImageDraw.Draw(eight).ellipse((20, 10, 220, 150), outline=255, width=70)
    ImageDraw.Draw(eight).ellipse((10, 130, 230, 290), outline=255, width=70)
    eight.save(tmp_path / "eight.png")
    paths = [str(tmp_path / name) for name in (*names, "framed.png", "seven.png", "eight.png")]
    out = runner.invoke(app, ["predict", "--json", *paths])
    got = [(r["prediction"], r["unsure"]) for r in json.loads(out.stdout)]
    assert got[:5] == [("4", False)] * 4 + [("7", False)] and got[5][0] == "8", out.output  # (ink covers half)
    for path in paths[3:]:  # left as they are
        grey = preprocess.read_image(path).grey
        assert preprocess.without_table(grey) is grey
    monkeypatch.setattr(preprocess, "without_table", lambda grey: grey)  # without the step: misread
    out = runner.invoke(app, ["predict", "--json", *paths[:3]])
    assert not any(r["prediction"] == "4" and not r["unsure"] for r in json.loads(out.stdout)), out.output


def _notebook_page(digit: np.ndarray, kind: str, turn: float, line_tone: int, pitch: int) -> Image.Image:
    """``digit`` (dark on white, 240x240) written on a ruled page with a red margin, or a squared
    one, photographed turned by ``turn`` degrees; the pen covers the printed lines."""
    paper = np.full((520, 460), 232, np.uint8)
    yy, xx = np.mgrid[0:520, 0:460]
    on = (yy % pitch) < 3
    if kind == "squared":
        on |= (xx % pitch) < 3
    paper[on] = line_tone
    rgb = np.stack([paper] * 3, -1)
    if kind == "ruled":
        rgb[:, 70:73] = (230, 120, 120)  # the margin
    rgb[140:380, 110:350] = np.minimum(rgb[140:380, 110:350], digit[..., None])
    img = Image.fromarray(rgb).rotate(turn, resample=Image.Resampling.BILINEAR, fillcolor=(232, 232, 232))
    return img.crop((20, 20, 440, 500))


def test_a_digit_on_ruled_or_squared_paper_is_read_without_the_printed_lines(tmp_path, monkeypatch):
    """A notebook's printed lines cross the digit and the whole picture: they were ink, and the 4
    was read with a confidence of 0.4-0.5. Lines turned by a few degrees, a margin line across the
    rulings, a grid: all taken away, the pen's strokes kept where they cross them."""
    from PIL import ImageDraw

    from mnistctl.images import prepare as preprocess

    four = np.asarray(Image.open(PAINT_4).convert("L").resize((240, 240)))
    names = []
    for n, (kind, turn, tone, pitch) in enumerate([("ruled", 2, 120, 50), ("squared", -3, 130, 36),
                                                   ("squared", 1, 110, 40), ("ruled", -4, 110, 40)]):
        _notebook_page(four, kind, turn, tone, pitch).save(tmp_path / f"{kind}-{n}.jpg", quality=85)
        names.append(f"{kind}-{n}.jpg")
    # and what must be left as it is: tightly cropped 7s whose bar is a whole row (drawn with a 3 px
    # pen, the bar pressed a little less hard than the stroke: a thin line across the picture, but
    # nearly as dark as the digit; a soft light pencil on noisy paper: a wide band), a frame around
    # a 4, a thick 0 touching all four sides
    seven = Image.new("L", (200, 260), 255)
    ImageDraw.Draw(seven).line([(0, 8), (199, 8)], fill=50, width=3)  # (pressed less hard than the stroke)
    ImageDraw.Draw(seven).line([(190, 8), (70, 259)], fill=0, width=3)
    seven.save(tmp_path / "seven.png")
    soft = Image.new("L", (200, 260), 255)
    ImageDraw.Draw(soft).line([(0, 12), (199, 12)], fill=0, width=16)
    ImageDraw.Draw(soft).line([(190, 12), (70, 259)], fill=0, width=16)
    soft = np.asarray(soft.filter(ImageFilter.GaussianBlur(3)), np.float32)
    pencil = soft * (60 / 255) + 170 + np.random.default_rng(0).normal(0, 4, soft.shape)
    Image.fromarray(np.clip(pencil, 0, 255).astype(np.uint8)).convert("RGB").save(tmp_path / "pencil.jpg")
    framed = Image.open(PAINT_4).convert("L")
    ImageDraw.Draw(framed).rectangle((0, 0, framed.width - 1, framed.height - 1), outline=0, width=6)
    framed.save(tmp_path / "framed.png")
    zero = Image.new("L", (220, 260), 255)
    ImageDraw.Draw(zero).ellipse((0, 0, 219, 259), outline=0, width=30)
    zero.save(tmp_path / "zero.png")
    others = ["seven.png", "pencil.jpg", "framed.png", "zero.png"]
    paths = [str(tmp_path / name) for name in (*names, *others)]

    out = runner.invoke(app, ["predict", "--json", *paths])
    got = [(r["prediction"], r["unsure"]) for r in json.loads(out.stdout)]
    assert got == [("4", False)] * 4 + [("7", False), ("7", False), ("4", False), ("0", False)], out.output
    with_lines = [preprocess.prepare(p).image for p in paths[4:]]
    monkeypatch.setattr(preprocess, "without_rulings", lambda ink, turns=None: (ink, (None, None)))
    out = runner.invoke(app, ["predict", "--json", *paths[:4]])  # without the step: all doubted
    assert not any(r["prediction"] == "4" and not r["unsure"] for r in json.loads(out.stdout)), out.output
    for path, image in zip(paths[4:], with_lines):  # and the others come out the same without it
        assert np.array_equal(preprocess.prepare(path).image, image), path


def test_specks_apart_from_the_digit_are_left_out_and_two_digits_are_doubted(tmp_path):
    """Dust on a scan or a stray click in a paint program once turned a 4 into a confident 2; the
    separate strokes of a digit stay; two digits side by side are read as the number, or, with
    --single, as one digit, and doubted."""
    from PIL import ImageDraw

    four = Image.open(PAINT_4).convert("L")
    dusty = four.copy()
    ImageDraw.Draw(dusty).ellipse((10, 10, 16, 16), fill=0)
    dusty.save(tmp_path / "dusty.png")
    five = Image.new("L", (240, 300), 255)  # a 5 whose bar is a stroke of its own
    draw = ImageDraw.Draw(five)
    draw.line([(95, 40), (185, 40)], fill=0, width=16)
    draw.line([(85, 55), (75, 140)], fill=0, width=16)
    draw.arc((50, 110, 190, 260), 250, 150, fill=0, width=16)
    five.save(tmp_path / "five.png")
    pair = Image.new("L", (600, 300), 255)
    pair.paste(four.resize((250, 250)), (20, 25))
    pair.paste(four.resize((250, 250)), (320, 25))
    pair.save(tmp_path / "pair.png")
    out = runner.invoke(app, ["predict", "--json", *(str(tmp_path / f) for f in ("dusty.png", "five.png", "pair.png"))])
    got = [(r["prediction"], r["unsure"], r["reasons"]) for r in json.loads(out.stdout)]
    assert got[:2] == [("4", False, []), ("5", False, [])], out.output
    assert [r["number"] for r in json.loads(out.stdout)] == ["4", "5", "44"] and got[2][0] is None
    single = runner.invoke(app, ["predict", "--json", "--single", str(tmp_path / "pair.png")])
    [doc] = json.loads(single.stdout)
    assert doc["unsure"] and any("separate places" in why for why in doc["reasons"]), doc
    assert doc["number"] == doc["prediction"] and len(doc["digits"]) == 1
    assert np.array_equal(prepare_image(tmp_path / "dusty.png"), prepare_image(PAINT_4))


def test_files_that_are_no_picture_say_what_they_are(tmp_path, monkeypatch):
    """HEIC (without its plugin), SVG and PDF are common "images" Pillow cannot read: each error
    names the format and what to do."""
    from mnistctl.images import read as images

    monkeypatch.setattr(images, "_heif_plugin", lambda: False)  # as where mnistctl[heif] is not installed
    files = {"photo.heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64),
             "drawing.svg": b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>',
             "scan.pdf": b"%PDF-1.7\n1 0 obj\n", "notes.txt": b"not a picture at all"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    out = runner.invoke(app, ["predict", "--json", *(str(tmp_path / f) for f in files)])
    errors = [r["error"] for r in json.loads(out.stdout)]
    assert "HEIC" in errors[0] and "mnistctl[heif]" in errors[0] and "JPEG" in errors[0]
    assert "SVG" in errors[1] and "PNG" in errors[1] and "PDF" in errors[2]
    assert errors[3].startswith("not an image") and "save it as PNG or JPEG" in errors[3]
    assert out.exit_code == 1


def test_heic_photos_are_read_with_the_plugin(tmp_path):
    try:
        import pillow_heif
    except ImportError:
        missing("pillow-heif is not installed (pip install -e '.[heif]')")
    pillow_heif.register_heif_opener()
    Image.open(ASSETS / "digit-7-photo.jpg").save(tmp_path / "iphone.heic", quality=80)
    assert (tmp_path / "iphone.heic").read_bytes()[4:12] == b"ftypheic"
    out = runner.invoke(app, ["predict", "--json", str(tmp_path / "iphone.heic")])
    assert [r["prediction"] for r in json.loads(out.stdout)] == ["7"], out.output
    assert prepare_image((tmp_path / "iphone.heic").read_bytes()).shape == (28, 28)  # uploads too


def test_two_level_tiny_and_one_bit_drawings_are_read(tmp_path, shipped):
    """The inputs that were once refused as blank: clean two-level drawings of any size and colour."""
    four = np.asarray(Image.open(PAINT_4).convert("L")) < 128  # the ink of a drawn 4, cut to its box
    ys, xs = np.nonzero(four)
    four = np.pad(four[ys.min():ys.max() + 1, xs.min():xs.max() + 1], 6)
    made = {}
    for name, (size, ink, paper) in {"bw": (300, 0, 255), "wb": (300, 255, 0), "tiny": (20, 0, 255),
                                     "small": (64, 0, 255)}.items():
        mask = np.asarray(Image.fromarray(four.astype(np.uint8) * 255).resize((size, size))) > 127
        made[name] = tmp_path / f"{name}.png"
        Image.fromarray(np.where(mask, ink, paper).astype(np.uint8)).save(made[name])
    Image.open(made["bw"]).convert("1").save(tmp_path / "onebit.png")
    rgb = np.where(np.asarray(Image.open(made["bw"]))[..., None] < 128, [255, 0, 0], [255, 255, 0])
    Image.fromarray(rgb.astype(np.uint8)).save(tmp_path / "red-on-yellow.png")
    paths = [*made.values(), tmp_path / "onebit.png", tmp_path / "red-on-yellow.png"]
    results = _predict(paths, shipped)
    assert [(_label(r), r.error) for r in results] == [("4", None)] * len(paths)


def _holes(image: np.ndarray) -> int:
    """Enclosed dark regions of a prepared (light on black) input: an 8 has two."""
    labels, count = pieces(image <= 127)
    outside = set(np.unique(border(labels))) - {0}
    return count - len(outside)


def test_the_small_loops_of_a_digit_on_a_tiny_canvas_stay_open(shipped):
    """The noise filter once filled 2 px loops on 16-20 px canvases (an 8 lost a hole)."""
    art = ["....######....",
           "...###..###...",
           "...###..###...",
           "....######....",
           ".....####.....",
           "...###..###...",
           "..###....###..",
           "..###....###..",
           "...########...",
           "....######...."]
    eight = np.array([[c == "#" for c in row] for row in art])
    for side in (16, 20):
        canvas = np.zeros((side, side), bool)
        canvas[3:3 + eight.shape[0], 1:1 + eight.shape[1]] = eight
        prepared = prepare_image(Image.fromarray(np.where(canvas, 0, 255).astype(np.uint8)))
        assert _holes(prepared) == 2, side
        assert shipped.classify(prepared[None])[0].label == "8"


def test_unsure_predictions_are_flagged_and_a_blank_page_is_an_error(tmp_path, shipped):
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((200, 200)) < 0.5).astype(np.uint8) * 255).save(tmp_path / "noise.png")
    Image.new("L", (200, 200), 255).save(tmp_path / "blank.png")
    noise, blank, four = _predict([tmp_path / "noise.png", tmp_path / "blank.png", PAINT_4], shipped)
    assert noise.unsure and any("single digit" in why for why in noise.reasons)
    assert blank.error and "no ink found" in blank.error
    assert not four.unsure and four.reasons == []
    out = runner.invoke(app, ["predict", "--json", str(tmp_path / "noise.png"), str(PAINT_4)])
    doc = json.loads(out.stdout)
    assert doc[0]["unsure"] is True and doc[0]["reasons"] and doc[1]["unsure"] is False
    table = runner.invoke(app, ["predict", str(tmp_path / "noise.png")], env={"COLUMNS": "150"})
    assert "?" in table.stdout and "unsure:" in table.stdout


def test_stdin_csv_and_one_summary_line_for_saved_inputs(tmp_path):
    data = PAINT_4.read_bytes()
    out = runner.invoke(app, ["predict", "-", "--csv"], input=data)
    assert out.exit_code == 0, out.output
    rows = out.stdout.splitlines()
    assert rows[0].startswith("path,prediction,confidence,unsure,reasons,error,p_0") and len(rows) == 2
    assert rows[0].endswith(",p_9,number,digits")
    row = next(csv.reader(io.StringIO(rows[1])))
    assert row[:2] == ["-", "4"] and len(row) == 18 and row[16] == "4" and json.loads(row[17])[0]["prediction"] == "4"
    out = runner.invoke(app, ["predict", "--save-inputs", str(tmp_path / "in"), *[str(PAINT_4)] * 5])
    assert out.exit_code == 0 and out.stdout.count("Saved") == 1
    assert f"Saved 5 inputs the model saw to {tmp_path / 'in'}" in " ".join(out.stdout.split())
    assert len(list((tmp_path / "in").iterdir())) == 5
    out = runner.invoke(app, ["predict", "--json", "--csv", str(PAINT_4)])
    assert out.exit_code == 1 and "one of --json and --csv" in out.stderr


def test_one_rule_for_naming_the_model(tmp_path):
    """--checkpoint/-c everywhere; evaluate and export also take it as their argument."""
    pt = checkpoint.pretrained_path()
    a = runner.invoke(app, ["export", str(pt), "-o", str(tmp_path / "a.pt"), "--data-dir", str(tmp_path)])
    b = runner.invoke(app, ["export", "-c", str(pt), "-o", str(tmp_path / "b.pt"), "--data-dir", str(tmp_path)])
    assert a.exit_code == b.exit_code == 0, (a.output, b.output)
    both = runner.invoke(app, ["predict", str(PAINT_4), "-c", str(pt), "-c", str(tmp_path / "a.pt"), "--json"])
    assert both.exit_code == 0 and json.loads(both.stdout)[0]["model"].startswith("ensemble of 2 models")
    none = runner.invoke(app, ["export", "-o", str(tmp_path / "c.pt")])
    assert none.exit_code == 1 and "give the checkpoint to export" in none.stderr


def test_a_directory_is_prepared_by_several_processes_as_by_one(tmp_path, shipped, monkeypatch):
    """From PARALLEL_FROM files on, pictures are prepared by a pool of processes: the same inputs,
    predictions, notes, errors and numbers, in the same order, as when this process prepares them
    all; a number's digits are found there too, so this process does not decode it again."""
    from mnistctl.images import preparers
    from mnistctl.images.prepare import decode
    from mnistctl.inference import numbers

    pictures = [ASSETS / "digit-7-photo.jpg", PAINT_4, ASSETS / "digit-2-transparent.png", ASSETS / "digit-3-mnist.png"]
    for i in range(preparers.PARALLEL_FROM + 2):
        (tmp_path / f"{i:03d}{pictures[i % 4].suffix}").write_bytes(pictures[i % 4].read_bytes())
    (tmp_path / "050.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    three = np.asarray(Image.open(ASSETS / "digit-3-mnist.png"))
    (tmp_path / "051.png").write_bytes(number_picture(np.stack([three, three]), 20, np.random.default_rng(0)))
    seen: list[int] = []
    here: list[object] = []  # pictures decoded in this process
    monkeypatch.setattr(preparers, "decode", lambda *a: here.append(a) or decode(*a))
    alone = predict_files([str(tmp_path)], shipped, jobs=1)
    assert len(here) == len(alone)
    monkeypatch.setattr(numbers, "decode", lambda *a: pytest.fail("a number decoded again"))
    pooled = predict_files([str(tmp_path)], shipped, jobs=2, progress=lambda done, total: seen.append(done))
    assert len(here) == len(alone)  # none more: the pool's processes decoded them
    assert [r.path for r in pooled] == [r.path for r in alone] and len(alone) == preparers.PARALLEL_FROM + 2
    assert [_label(r) for r in pooled] == [_label(r) for r in alone]
    assert [(r.notes, r.error, r.text) for r in pooled] == [(r.notes, r.error, r.text) for r in alone]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(alone, pooled) if a.image is not None)
    assert alone[50].error and "not an image" in alone[50].error and _label(alone[0]) == "7" and _label(alone[1]) == "4"
    assert pooled[51].text == "33" and pooled[51].number is not None and pooled[51].layout is None
    assert seen == list(range(1, len(alone) + 1))


def test_a_picture_whose_two_looks_differ_is_unsure_and_mnist_digits_keep_one_threshold(shipped):
    """People's pictures are read twice (as prepared and widened): either look under LOOKS_BELOW (0.96)
    for the choice makes the answer unsure even when the average is over 0.8; a digit read once keeps
    the 0.8 threshold alone (MNIST's own digits: 0.4% of the test set unsure)."""
    from mnistctl.inference.classifier import LOOKS_BELOW, UNSURE_BELOW, predictions

    classes = tuple("0123456789")
    probs = np.full((3, 10), 0.003, np.float32)
    probs[:, 3] = 0.995
    looks = np.stack([probs, probs], 1)
    looks[0, 1, 3] = 0.85  # the widened look is less sure: 0.85 < LOOKS_BELOW
    looks[2] = np.nan  # read once
    doubtful, firm, once = predictions(probs, classes, looks)
    assert UNSURE_BELOW < 0.85 < LOOKS_BELOW < 0.995 and doubtful.least == pytest.approx(0.85)
    assert doubtful.unsure and doubtful.doubt == "a look at it is only 85.0% sure"
    assert not firm.unsure and firm.least == pytest.approx(0.995) and firm.doubt is None
    assert once.least is None and not once.unsure
    image = np.asarray(Image.open(PAINT_4).convert("L").resize((28, 28)))
    twice, read_once = shipped.classify(np.stack([image, image]), [True, False])
    assert twice.least is not None and read_once.least is None


def test_a_narrow_digit_is_also_read_at_a_usual_width_and_doubted_when_that_differs():
    """A condensed hand's digit, fitted by its height, is a thin stroke read as a sure 1; shown at a
    usual width (``fit.at_width``) it is read again, and the answer is unsure when that reading is
    another digit. Wide digits, and digits read once, are never read so."""
    from mnistctl.inference.classifier import NARROW_BELOW, Classifier

    bar = np.zeros((28, 28), np.uint8)
    bar[4:24, 12:16] = 255  # 20 tall, 4 wide: aspect 0.2
    square = np.zeros((28, 28), np.uint8)
    square[4:24, 4:24] = 200
    stretched, narrow = fit.at_width(np.stack([bar, square]), NARROW_BELOW)
    assert narrow.tolist() == [True, False] and np.array_equal(stretched[1], square)
    cols = np.flatnonzero(stretched[0].max(0) > fit.INK)
    rows = np.flatnonzero(stretched[0].max(1) > fit.INK)
    assert len(cols) == 9 and (rows.min(), rows.max()) == (4, 23)  # 20 x 0.45, in the same rows
    assert abs((cols.min() + cols.max()) / 2 - 13.5) <= 1

    class ByWidth(Classifier):
        """Reads ink under 8 px wide as a sure 1, wider ink as a sure 8."""
        classes = tuple("0123456789")

        def probabilities(self, images):
            out = np.full((len(images), 10), 0.001, np.float32)
            for i, image in enumerate(images):
                out[i, 1 if (image.max(0) > fit.INK).sum() < 8 else 8] = 0.991
            return out

    narrow_one, wide_eight, once = ByWidth().classify(np.stack([bar, square, bar]), [True, True, False])
    assert narrow_one.label == "1" and narrow_one.wide == 8 and narrow_one.unsure
    assert narrow_one.doubt == "it is narrow, and at a usual width it reads as 8"
    assert wide_eight.label == "8" and wide_eight.wide is None and not wide_eight.unsure
    assert once.label == "1" and once.wide is None and not once.unsure
