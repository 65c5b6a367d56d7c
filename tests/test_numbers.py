"""Reading numbers (`predict --number`, `Classifier.read_number`): digits found left to right in
pictures of numbers made here from MNIST *training* digits -- separated, and touching pairs."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import REPO
from mnistctl.cli.commands import app
from mnistctl.config import DataConfig
from mnistctl.data.splits import load_split
from mnistctl.inference.files import predict_files
from people import block_counts, make_corpus, make_number_corpus, number_picture

pytestmark = pytest.mark.realdata
runner = CliRunner()


@pytest.fixture(scope="module")
def training(mnist_data_dir):
    images, labels = load_split(DataConfig(), "train", mnist_data_dir)
    return images.numpy(), labels.numpy()


@pytest.fixture(scope="module")
def shipped():
    from mnistctl.inference.classifier import load_classifier

    return load_classifier(None)


def _read(shipped, training, count: int, gaps: tuple[int, int], sizes: tuple[int, int], seed: int):
    images, labels = training
    rng = np.random.default_rng(seed)
    whole = digit_right = digit_total = 0
    for _ in range(count):
        pick = rng.integers(0, len(labels), int(rng.integers(*sizes)))
        truth = "".join(str(labels[i]) for i in pick)
        got = shipped.read_number(number_picture(images[pick], int(rng.integers(*gaps)), rng)).number or ""
        whole += got == truth
        digit_right += sum(a == b for a, b in zip(got, truth)) if len(got) == len(truth) else 0
        digit_total += len(truth)
    return whole / count, digit_right / digit_total


@pytest.mark.slow
def test_separated_numbers_are_read_digit_by_digit(shipped, training):
    """120 numbers of 2-6 digits with gaps: at least 97% of digits and 95% of numbers read right
    (measured here: 97.8% and 97.5%; on 300 4-digit numbers of MNIST test digits 96.7% whole,
    benchmarks/numbers-*.json; the issue's targets are 99% of digits and 97% of 4-digit numbers)."""
    whole, per_digit = _read(shipped, training, 120, (8, 30), (2, 7), seed=1)
    assert per_digit >= 0.97 and whole >= 0.95, (whole, per_digit)


@pytest.mark.slow
def test_touching_pairs_are_split_where_the_classifier_reads_them_best(shipped, training):
    """100 pairs whose digits touch or nearly do, read whole (measured: 93% here, 90.0% on 300 pairs
    of MNIST test digits; the issue's target: 90%)."""
    whole, _ = _read(shipped, training, 100, (-3, 1), (2, 3), seed=2)
    assert whole >= 0.88, whole


@pytest.mark.slow
def test_numbers_in_the_people_styles_and_single_digits_left_alone(shipped, training, tmp_path):
    """Numbers of 2-8 digits with gaps drawn in the 18 people styles that hold a number (half of them
    slanted), read by `predict` as it reads any picture; and single digits in every style read
    exactly as --single reads them (none taken for a number). Measured on MNIST test digits
    (benchmarks/numbers-*.json): 91.7% whole, 95.9% of digits; 0 of 1,000 single digits changed."""
    images, labels = training
    corpus = make_number_corpus(images[:20000], labels[:20000], tmp_path / "numbers", 90, spacings=("gaps",),
                                seed=3)
    results = predict_files([str(p) for p, *_ in corpus], shipped, jobs=1)
    got = [r.text or "" for r in results]
    whole = np.mean([g == t for g, (_, t, *_) in zip(got, corpus)])
    per_digit = sum(sum(a == b for a, b in zip(g, t)) for g, (_, t, *_) in zip(got, corpus) if len(g) == len(t)) / \
        sum(len(t) for _, t, *_ in corpus)
    assert whole >= 0.85 and per_digit >= 0.92, (whole, per_digit)
    assert all(r.number is not None and len(r.to_dict()["digits"]) == len(r.text or "") for r in results
               if len(r.text or "") > 1)
    singles = make_corpus(images[20000:20010], labels[20000:20010], tmp_path / "singles", 10, seed=3)
    files = [str(p) for items in singles.values() for p, _ in items]
    one, auto = predict_files(files, shipped, numbers="never", jobs=1), predict_files(files, shipped, jobs=1)
    assert [r.text for r in auto] == [r.text for r in one] and not any(r.number for r in auto)


def test_one_digit_reads_as_predict_reads_it_and_the_cli_prints_the_number(shipped, training, tmp_path):
    images, labels = training
    [photo] = shipped.predict(str(REPO / "assets" / "digit-7-photo.jpg"))
    reading = shipped.read_number(str(REPO / "assets" / "digit-7-photo.jpg"))
    assert reading.number == "7" == photo.prediction.label and not reading.unsure
    assert reading.digits[0].prediction.probabilities == pytest.approx(photo.prediction.probabilities, abs=1e-6)
    pick = np.flatnonzero(labels == 0)[:1].tolist() + np.flatnonzero(labels == 4)[:1].tolist() * 2
    (tmp_path / "n.png").write_bytes(number_picture(images[pick], 20, np.random.default_rng(0)))
    result = runner.invoke(app, ["predict", "--number", "--json", str(tmp_path / "n.png")])
    assert result.exit_code == 0, result.output
    [doc] = json.loads(result.stdout)
    assert doc["number"] == "044" and len(doc["digits"]) == 3 and doc["error"] is None  # the leading zero kept
    assert set(doc["digits"][0]) == {"box", "prediction", "confidence", "unsure"}
    boxes = [d["box"] for d in doc["digits"]]
    assert boxes == sorted(boxes) and all(b[0] < b[2] and b[1] < b[3] for b in boxes)
    table = runner.invoke(app, ["predict", "--number", str(tmp_path / "n.png")])
    assert table.exit_code == 0 and "044" in table.output


def test_a_known_count_guides_the_split_and_several_lines_are_refused(shipped, training, tmp_path):
    images, labels = training
    rng = np.random.default_rng(5)
    pick = rng.integers(0, len(labels), 2)
    pair = number_picture(images[pick], -6, rng)
    assert len(shipped.read_number(pair, digits=2).digits) == 2
    two_lines = np.full((300, 260), 235.0, np.float32)  # one digit high on the left, one low on the right
    for (top, left), i in zip(((20, 30), (190, 150)), rng.integers(0, len(labels), 2)):
        big = np.asarray(Image.fromarray(images[i]).resize((84, 84), Image.Resampling.BICUBIC), np.float32)
        two_lines[top:top + 84, left:left + 84] -= big * 0.85
    out = io.BytesIO()
    Image.fromarray(np.clip(two_lines, 0, 255).astype(np.uint8)).save(out, "PNG")
    reading = shipped.read_number(out.getvalue())
    assert reading.number is None and "several lines" in reading.error
    (tmp_path / "blank.png").write_bytes(_blank())
    result = runner.invoke(app, ["predict", "--number", str(tmp_path / "blank.png")])
    assert result.exit_code == 1 and "blank" in result.output and "Traceback" not in result.output


def _blank() -> bytes:
    out = io.BytesIO()
    Image.new("L", (100, 60), 230).save(out, "PNG")
    return out.getvalue()


def test_a_lone_stroke_is_never_read_as_several_digits(shipped):
    """A bar a few strokes tall (a dash; the top of a 7 while it is being drawn on the serve page)
    is one stroke, not a row of zeros: read as one digit, even when the picture is said to hold a
    number. Two digits drawn alone stay a number."""
    from PIL import ImageDraw

    def picture(width: int, then_digits: bool = False) -> bytes:
        img = Image.new("L", (560, 280), 255)
        draw = ImageDraw.Draw(img)
        if width:
            draw.line([(60, 56), (60 + width, 56)], fill=17, width=20)
        if then_digits:  # a 1 and a 7 below it, each a digit's height
            draw.line([(120, 110), (115, 260)], fill=17, width=20)
            draw.line([(220, 110), (300, 110), (250, 260)], fill=17, width=20)
        out = io.BytesIO()
        img.save(out, "PNG")
        return out.getvalue()

    for width in (60, 120, 300):
        for numbers in ("auto", "always"):
            [r] = shipped.predict(picture(width), numbers=numbers)
            assert r.number is None and r.prediction is not None, (width, numbers, r.text)
    [r] = shipped.predict(picture(0, then_digits=True), numbers="always")
    assert r.number is not None and r.number.number == "17", r.text


def test_two_digits_written_close_are_a_number_and_a_digit_in_two_strokes_is_not(shipped, training):
    """Two digits side by side no wider together than a digit is tall (a "11", a "17") were often read
    as one digit when their ink was near enough to count as one digit's strokes: digit-tall pieces
    sharing hardly a column are two digits. A 4 whose strokes do not meet, slanted so that they
    share only a few columns, stays one digit (the people-style corpus has one)."""
    from mnistctl.images.around import side_by_side

    images, labels = training
    ones = np.flatnonzero(labels == 1)[:40]
    rng = np.random.default_rng(3)
    read = 0
    for a, b in zip(ones[0::2], ones[1::2]):
        [r] = shipped.predict(number_picture(images[[a, b]], 12, rng))
        read += r.number is not None and r.number.number == "11"
    assert read >= 18, read  # measured: 20 of 20 (7 before)
    # a picture under 16 px each way (an 8x8 scan: blocks of a 32x32 bitmap) is one digit; these two
    # training digits so, a wide 4 and a 2, were read as "11" and "22"
    for i in (676, 1745):
        [r] = shipped.predict(block_counts(images[i]))
        assert r.number is None and r.prediction is not None, (i, r.text)
    # y0, y1, x0, x1 of the pieces: a 4's two strokes sharing columns; a 5 and its short flag
    assert not side_by_side(np.array([[10, 40, 0, 30], [0, 60, 25, 45]]))
    assert not side_by_side(np.array([[0, 60, 0, 30], [0, 12, 35, 50]]))
    assert side_by_side(np.array([[0, 60, 0, 10], [2, 58, 14, 40]]))
    assert side_by_side(np.array([[0, 60, 0, 12], [2, 58, 12, 40]]))  # a column shared: a foot and a bar meeting


def test_a_touching_pair_beside_another_digit_is_cut_and_doubted(shipped, training):
    """A picture with two or more digits apart holds a number: a touching pair in it is cut as
    `--number` cuts one, and the cut is doubted (unsure) unless a number was asked for: here a digit
    and a touching pair. Numbers from validation digits in the people styles (480, `predict`): 53%
    -> 60% whole, wrong and not marked unsure 55 -> 38."""
    images, labels = training
    rng = np.random.default_rng(5)
    whole = sure_wrong = 0
    for _ in range(20):
        a, b, c = rng.integers(0, len(labels), 3)
        left = np.asarray(Image.open(io.BytesIO(number_picture(images[[a]], 0, rng))).convert("L"))
        right = np.asarray(Image.open(io.BytesIO(number_picture(images[[b, c]], -3, rng))).convert("L"))
        [r] = shipped.predict(Image.fromarray(np.concatenate([left, right], 1)))
        right_answer = r.text == f"{labels[a]}{labels[b]}{labels[c]}"
        whole += right_answer
        sure_wrong += not right_answer and not r.unsure
    assert whole >= 15 and sure_wrong <= 2, (whole, sure_wrong)  # measured: 17 and 1 (11 and 2 before)

