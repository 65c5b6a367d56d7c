"""Read a number: every digit of a picture found (``mnistctl.images.numbers``), each prepared and
read as ``predict`` reads one digit (two looks), all in one batch, left to right.

Digits that touch are split where the classifier reads the parts best. Whether a group up to
twice as wide as the digits are tall is one digit or two is decided by a small logistic model of
how it reads whole and cut in two, its width and the ink at the cut (``PAIR_MODEL``); a wider
group is tried whole and cut into two or more at the columns with the least ink, and the reading
with the most confident digits wins, less a penalty for straying from the number of digits the
group's width suggests. A picture not known to hold a number (``predict`` without ``--number``)
uses that rule for every group, with a bonus for reading a group whole (``ONE_DIGIT``): a wide
single digit is more common there than two touching ones. A number is unsure when any digit is,
or when the split itself was doubtful.

The constants were set on pictures made from MNIST's *validation* digits (never its test set):
single digits in the 20 people styles and on plain paper, touching and overlapping pairs and
touching triples; the logistic model was fitted on *training* digits (docs/design-notes.md,
"Reading numbers").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mnistctl.errors import ImageError
from mnistctl.images.fit import stroke_width
from mnistctl.images.numbers import Group, Layout, cuts, digit_input, find_digits, split
from mnistctl.images.prepare import ImageSource, analyse, decode
from mnistctl.inference.classifier import Classifier, Prediction

MAX_PARTS = 6  # a group of touching digits is tried as up to this many digits
TRIES = {2: 5, 3: 4, 4: 3}  # columns tried for each cut, by the number of parts (fewer for more: they multiply)
DOUBT = 0.35  # a split whose score is within this of the best one's makes the reading doubtful
# one digit or two touching, for a group up to PAIR_UPTO times as wide as the digits are tall: a logistic
# model of its features (``_one_or_two``: log width / height; the whole reading's log-confidence and its
# margin over the runner-up; the cut reading's mean and least log-confidence; the ink at the cut over the
# group's typical column; how far off-centre the cut is; the narrower part's width / height; the shorter
# part's share of the height), fitted on 1,694 groups from pictures of MNIST *training* digits (single
# digits, touching pairs, close pairs) and checked on 665 from *validation* digits: 0.8% of single digits
# cut, 13.9% of pairs left whole (the width-and-confidence rule before: 4.9% and 23.9%)
PAIR_MODEL = (np.array([0.97, -0.17, -1.63, 0.22, 0.19, -1.48, 0.18, 0.71, 0.65]), -1.33,
              np.array([-0.041, -0.047, 7.227, -0.01, -0.016, 0.972, 0.093, 0.413, 0.804]),
              np.array([0.3, 0.145, 2.384, 0.023, 0.043, 0.584, 0.051, 0.158, 0.185]))
PAIR_FROM, PAIR_UPTO = 0.75, 2.0  # the groups (their width over the digits' height) the model decides for
# (from 0.6 on validation digits: separated 4-digit numbers 97.0%; from 0.75: 97.3%, pairs 92.0% -> 91.7%)
# the probability of two at which a group is cut (on pictures of validation digits: touching pairs 92.0%
# whole, separated 4-digit numbers 97.0%; at 0.5: 92.7% and 96.7%). Only in a picture known to hold a number
# (--number, --digits): in any other, the width-and-confidence rule with ONE_DIGIT keeps single digits whole
# (with the model at 0.7, 22 of 1,000 single digits in the people styles were cut)
PAIR_IN_NUMBER = 0.6
PAIR_DOUBT = 0.2  # a probability of two this close to 0.5 makes the reading doubtful
# a reason a number is unsure
DIGIT_UNSURE = "a digit is unsure (low confidence, a look at it not sure enough, or too narrow to tell)"
PER_DIGIT_WIDTH = 0.8  # a digit is about this many times as wide as the digits are tall (for the expected split)
AWAY = 0.5  # the score lost per digit away from the number the group's width suggests
ONE_DIGIT = 0.5  # the score a group read whole gains when the picture is not known to hold a number
FLAT = 2.5  # a lone group less than this many strokes tall is one stroke (a dash, a bar): never several digits


@dataclass
class DigitReading:
    """One digit of a number: where it is (x0, y0, x1, y1 in the picture's pixels, ends exclusive)
    and how it reads."""

    box: tuple[int, int, int, int]
    prediction: Prediction
    image: np.ndarray  # the 28x28 input the model saw

    def to_dict(self) -> dict[str, Any]:
        p = self.prediction
        return {"box": list(self.box), "prediction": p.label, "confidence": p.confidence, "unsure": p.unsure}


@dataclass
class NumberReading:
    """A picture read as a number: its digits left to right (``number``, leading zeros kept), or the
    error that kept it from being read."""

    path: str
    digits: list[DigitReading] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # why the reading should not be trusted blindly
    error: str | None = None

    @property
    def number(self) -> str | None:
        return "".join(d.prediction.label for d in self.digits) if self.digits else None

    @property
    def unsure(self) -> bool:
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "number": self.number, "digits": [d.to_dict() for d in self.digits],
                "unsure": self.unsure if self.error is None else None, "reasons": self.reasons, "error": self.error}


def read_number(classifier: Classifier, source: ImageSource, path: str = "image",
                count: int | None = None, *, number: bool = True) -> NumberReading:
    """Read the number in ``source``; ``count``: how many digits it has, when known (the boxes of a
    form), which guides the split of touching digits; ``number=False``: the picture is more likely
    one digit (a wide group is split only when the parts read clearly better). A picture read as
    one digit is read exactly as ``predict`` reads it. Problems with the picture are the reading's
    ``error``."""
    try:
        decoded = decode(source)
        return _several(classifier, find_digits(decoded), path, count, number) or \
            _one_digit(classifier, decoded, NumberReading(path))
    except ImageError as exc:
        return NumberReading(path, error=str(exc))


def several_digits(classifier: Classifier, source: ImageSource, path: str = "image", count: int | None = None, *,
                   number: bool = True, layout: Layout | str | None = None) -> NumberReading | None:
    """``read_number``'s reading of a picture that holds several digits (or a known ``count`` other
    than one), or of one it cannot read (its ``error``); None for a picture of one digit, which
    ``predict`` has read already. ``layout``: its digits, found already where it was prepared
    (``Prepared.layout``; a text: why they cannot be), so that it is not decoded again."""
    try:
        if layout is None:
            layout = find_digits(decode(source))
        elif isinstance(layout, str):
            raise ImageError(layout)
        return _several(classifier, layout, path, count, number)
    except ImageError as exc:
        return NumberReading(path, error=str(exc))


def _several(classifier: Classifier, layout: Layout, path: str, count: int | None,
             number: bool) -> NumberReading | None:
    """The digits found in a picture read as a number, or None when it reads as one digit."""
    if len(layout.groups) == 1 and count in (None, 1):
        group = layout.groups[0]
        if not _may_be_several(layout, group, number) or group.height < FLAT * stroke_width(group.ink):
            return None
    reading = NumberReading(path)
    # two or more digits found: the picture holds a number, and its groups are read as --number reads
    # them (a touching pair cut by the pair model), each cut doubted unless a number was asked for
    chosen = _digits(classifier, layout, count, reading, number or len(layout.groups) > 1, doubt_cuts=not number)
    if len(chosen) == 1 and count in (None, 1):
        return None
    images = np.stack([image for _, image in chosen])
    predictions = classifier.classify(images, [True] * len(chosen))
    reading.digits = [DigitReading(layout.box(g), p, image) for (g, image), p in zip(chosen, predictions)]
    if any(p.unsure for p in predictions):
        reading.reasons.insert(0, DIGIT_UNSURE)
    if count is not None and len(reading.digits) != count:
        reading.reasons.append(f"{len(reading.digits)} digits found where {count} were expected")
    reading.reasons = list(dict.fromkeys([*reading.reasons, *layout.notes]))  # each reason once
    return reading


def _digits(classifier: Classifier, layout: Layout, count: int | None, reading: NumberReading,
            number: bool = True, doubt_cuts: bool = False) -> list[tuple[Group, np.ndarray]]:
    """Each group as the digits it reads best as (a doubtful split noted in ``reading``; with
    ``doubt_cuts``, every pair cut), with their inputs."""
    chosen: list[tuple[Group, np.ndarray]] = []
    for group, wanted in zip(layout.groups, _parts_wanted(layout, count)):
        if wanted is None and number and group.width <= PAIR_UPTO * layout.digit_height:
            if not _may_be_several(layout, group, number):
                chosen.append((group, digit_input(group)))
                continue
            two, parts = _one_or_two(classifier, group, layout.digit_height)
            cut = bool(parts) and two >= PAIR_IN_NUMBER
            if abs(two - 0.5) < PAIR_DOUBT or cut and doubt_cuts:
                reading.reasons.append("touching digits: one digit or two?")
            chosen += parts if cut else [(group, digit_input(group))]
            continue
        options = [wanted] if wanted is not None else _options(layout, group)
        scored = [_score(classifier, group, k, 0.0 if number or k > 1 else ONE_DIGIT) for k in options]
        best = max(range(len(scored)), key=lambda i: scored[i][0])
        runner_up = max((s for i, (s, _) in enumerate(scored) if i != best), default=-math.inf)
        if scored[best][0] - runner_up < DOUBT:
            reading.reasons.append("touching digits: another split reads almost as well")
        chosen += scored[best][1]
    return chosen


def _may_be_several(layout: Layout, group: Group, number: bool) -> bool:
    """Whether ``group`` is wide enough to be two or more digits touching: a picture known to hold
    a number tries groups from ``PAIR_FROM`` of the digits' height (a 1 touching a 0); another only
    the groups ``Layout.wide`` calls wide."""
    return group.width >= PAIR_FROM * layout.digit_height if number else layout.wide(group)


def _one_or_two(classifier: Classifier, group: Group,
                height: float) -> tuple[float, list[tuple[Group, np.ndarray]]]:
    """How likely ``group`` is two digits touching rather than one (a logistic model of how it reads
    whole and cut in two, its width and the ink where it is cut: ``PAIR_MODEL``), and the two digits
    at the cut they read best at (empty when no cut gives two)."""
    inputs = _cut_in(group, 2)
    if not inputs:
        return 0.0, []
    whole = digit_input(group)
    logs = np.log(np.maximum(classifier.probabilities(np.stack([whole] + [i for w in inputs for _, i in w])), 1e-9))
    top = np.sort(logs[0])[::-1]
    parts = logs[1:].max(1).reshape(len(inputs), 2)
    best = int(parts.mean(1).argmax())
    (a, _), (b, _) = inputs[best]
    profile = group.ink.sum(0)
    cut = a.x1 - group.x0
    neck = profile[max(0, cut - 1):cut + 1].min() / max(float(np.median(profile[profile > 0])), 1e-6)
    features = np.array([np.log(group.width / height), top[0], top[0] - top[1], parts[best].mean(), parts[best].min(),
                         neck, abs(cut / group.width - 0.5), min(a.width, b.width) / height,
                         min(a.height, b.height) / max(group.height, 1)])
    weights, bias, mean, spread = PAIR_MODEL
    z = float(((features - mean) / spread) @ weights + bias)
    return 1.0 / (1.0 + math.exp(-z)), inputs[best]


def _one_digit(classifier: Classifier, decoded: Any, reading: NumberReading) -> NumberReading:
    """A picture of one digit: prepared and read exactly as ``predict`` reads it (its notes as reasons)."""
    prepared = analyse(decoded)
    [prediction] = classifier.classify(prepared.image[None], [prepared.redrawn])
    assert prepared.box is not None  # analyse finds the ink's box
    reading.digits = [DigitReading(prepared.box, prediction, prepared.image)]
    doubt = [DIGIT_UNSURE] if prediction.unsure else []
    reading.reasons = doubt + list(prepared.notes)
    return reading


def _options(layout: Layout, group: Group) -> list[int]:
    """How many digits a group is tried as: one; for a wide group, up to half again as many as its
    width suggests (a 1 is narrow), and at most ``MAX_PARTS``."""
    if not layout.wide(group):
        return [1]
    return list(range(1, max(2, min(MAX_PARTS, round(1.5 * _expected_digits(group)))) + 1))


def _parts_wanted(layout: Layout, count: int | None) -> list[int | None]:
    """With a known ``count`` of digits: how many each group is (the widest for each one missing);
    without: None each (the reader tries)."""
    if count is None or count <= len(layout.groups):
        return [None if count is None else 1] * len(layout.groups)
    parts = [1] * len(layout.groups)
    for _ in range(count - len(layout.groups)):
        i = max(range(len(parts)), key=lambda j: layout.groups[j].width / parts[j])
        parts[i] += 1
    return list(parts)


def _score(classifier: Classifier, group: Group, k: int,
           bonus: float = 0.0) -> tuple[float, list[tuple[Group, np.ndarray]]]:
    """``group`` read as ``k`` digits, at the cuts (``cuts``) whose digits the classifier is surest
    of: the mean log-confidence, less ``AWAY`` per digit from the number the group's width suggests,
    plus ``bonus``; and those digits with their inputs."""
    inputs = (_cut_in(group, k) if k > 1 else []) or [[(group, digit_input(group))]]
    probs = classifier.probabilities(np.stack([image for way in inputs for _, image in way]))
    confidence = np.log(np.maximum(probs.max(1), 1e-9)).reshape(len(inputs), -1).mean(1)
    best = int(np.argmax(confidence))
    return float(confidence[best]) - AWAY * abs(k - _expected_digits(group)) + bonus, inputs[best]


def _cut_in(group: Group, k: int) -> list[list[tuple[Group, np.ndarray]]]:
    """The ways to cut ``group`` into ``k`` digits (``cuts``, ``TRIES`` columns per cut) that give
    ``k`` parts with ink, each part with its 28x28 input."""
    ways = [way for way in (split(group, at) for at in cuts(group, k, TRIES.get(k, 2))) if len(way) == k]
    return [[(p, digit_input(p)) for p in way] for way in ways]


def _expected_digits(group: Group) -> float:
    """How many digits a group's width suggests (a digit being about ``PER_DIGIT_WIDTH`` as wide as tall)."""
    return group.width / (PER_DIGIT_WIDTH * max(group.height, 1))
