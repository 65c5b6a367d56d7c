"""Find the digits of a number in a picture: pieces of ink grouped into digits, ordered left to
right, each prepared as a single digit is (``mnistctl.images.prepare``).

The picture is cleaned as for one digit (table, polarity, background, rulings, noise, a frame),
then its 8-connected pieces of ink are grouped: pieces that share most of their width are the
strokes of one digit (a 5's bar, a 4 written in two strokes), specks and marks much smaller than
the digits (a decimal point) are left out. A group much wider than the digits are tall may be
several digits touching: ``cuts`` proposes where to split it (the columns with the least ink),
and the reader (``mnistctl.inference.numbers``) scores the readings with the classifier. One
line of digits is read; several lines are refused with a clear error.

Numpy, OpenCV (through ``pixels``) and Pillow; no torch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from mnistctl.images.around import OVERLAP
from mnistctl.images.fit import fit
from mnistctl.images.pixels import piece_boxes, pieces
from mnistctl.images.prepare import SEVERAL_WIDE, WORK_SIZE, Decoded, ImageError, look

NUMBER_WORK = 2 * WORK_SIZE  # px, the longer side a number is found on: six digits keep ~50 px each
DIGIT_HEIGHT = 0.45  # a group at least this share of the tallest group's height is a digit (less: a mark)
SPECK = 0.02  # a piece with less than this share of the ink, and small, is a speck
WIDE = SEVERAL_WIDE  # a group wider than this times the digits' typical height may be several digits touching
SLIVER = 0.1  # a piece along the picture's edge thinner than this share of its length is a table's or a page's edge
EDGE, ALONG = 0.03, 0.85  # ... or one this near the edge, running along this share of it (a frame's side)


@dataclass(frozen=True)
class Group:
    """The ink of one digit (or of touching digits): its box in the work picture (ends exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int
    ink: np.ndarray  # float32 [y1 - y0, x1 - x0]: only this group's pieces

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass
class Layout:
    """The digit groups of a picture, left to right, and the typical digit height (px)."""

    groups: list[Group]
    digit_height: float
    notes: tuple[str, ...] = ()
    origin: tuple[int, int] = (0, 0)  # where the work picture's (0, 0) is in the picture reduced to work size
    scale: float = 1.0  # the picture's pixels per work pixel
    offset: tuple[float, float] = (0.0, 0.0)  # where the decoded picture starts in the picture (``Decoded.origin``)

    def box(self, group: Group) -> tuple[int, int, int, int]:
        """``group``'s box in the picture's own pixels (x0, y0, x1, y1; ends exclusive)."""
        (ox, oy), s, (px, py) = self.origin, self.scale, self.offset
        return (int(px + (group.x0 + ox) * s), int(py + (group.y0 + oy) * s), int(np.ceil(px + (group.x1 + ox) * s)),
                int(np.ceil(py + (group.y1 + oy) * s)))

    def wide(self, group: Group) -> bool:
        """Whether ``group`` is wide enough to be several digits touching."""
        return group.width > WIDE * self.digit_height


def find_digits(decoded: Decoded) -> Layout:
    """The groups of ink that are digits, left to right. ImageError for a blank picture or for
    several lines of digits."""
    seen = look(decoded, NUMBER_WORK)
    soft, origin = seen.soft, (0, 0)
    if seen.inside is not None:
        y0, y1, x0, x1 = seen.inside
        soft = soft[y0:y1, x0:x1]
        origin = (x0, y0)
    scale = seen.scale * seen.ink.shape[1] / seen.view.shape[1]
    labels, count = pieces(soft > 0)
    if count == 0:
        raise ImageError("no ink found: the image looks blank")
    mass = np.bincount(labels.ravel(), weights=soft.ravel(), minlength=count + 1)[1:]
    box = piece_boxes(labels, count)  # x0, y0, x1, y1 (ends exclusive)
    edge = _slivers(box, soft.shape)
    if edge.all():
        raise ImageError("no ink found: the image looks blank")
    tallest = int((box[~edge, 3] - box[~edge, 1]).max())
    keep = [i for i in range(count) if not edge[i] and
            (mass[i] >= SPECK * mass.sum() or box[i, 3] - box[i, 1] >= 0.25 * tallest)]
    members = _by_columns([(int(box[i, 0]), int(box[i, 2]), i) for i in keep])
    groups = []
    for ids in members:
        x0, y0 = int(box[ids, 0].min()), int(box[ids, 1].min())
        x1, y1 = int(box[ids, 2].max()), int(box[ids, 3].max())
        own = np.isin(labels[y0:y1, x0:x1], np.asarray(ids) + 1)
        groups.append(Group(x0, y0, x1, y1, np.where(own, soft[y0:y1, x0:x1], 0.0).astype(np.float32)))
    # the digits' height: the tallest group's, or where one group is far taller than most (a digit
    # joined to a frame, a stroke running off), the typical tall group's
    top = int(min(max(g.height for g in groups), 1.25 * np.percentile([g.height for g in groups], 75)))
    groups = _strokes_joined(sorted(groups, key=lambda g: g.x0), top)
    digits = [g for g in groups if g.height >= DIGIT_HEIGHT * top]
    notes = ("marks smaller than the digits were left out",) if len(digits) < len(groups) else ()
    height = float(top)  # a flat 2 or 5 is shorter, never taller
    centres = [(g.y0 + g.y1) / 2 for g in digits]
    if len(digits) > 1 and max(centres) - min(centres) > 0.75 * height and \
            not any(a.x1 > b.x0 for a, b in zip(digits, digits[1:])):
        raise ImageError("digits on several lines: crop the picture to one line of digits")
    return Layout(digits, height, notes, origin, scale, decoded.origin)


STROKE = 0.25  # a group narrower than this share of the digits' height, and shorter than ...
STROKE_HEIGHT = 0.7  # ... this share, is a stroke of the digit beside it (a 1 is narrow but tall)


def _strokes_joined(groups: list[Group], top: int) -> list[Group]:
    """Narrow, short groups joined to the nearer neighbour: a stroke of a digit that its other
    strokes do not overlap enough (the top of a 6, a 5's flag)."""
    out: list[Group] = []
    for i, g in enumerate(groups):
        if g.width < STROKE * top and g.height < STROKE_HEIGHT * top and len(groups) > 1:
            left = g.x0 - out[-1].x1 if out else None
            right = groups[i + 1].x0 - g.x1 if i + 1 < len(groups) else None
            if left is not None and (right is None or left <= right):
                out[-1] = _joined(out[-1], g)
                continue
            if right is not None:
                groups[i + 1] = _joined(g, groups[i + 1])
                continue
        out.append(g)
    return out


def _joined(a: Group, b: Group) -> Group:
    x0, y0, x1, y1 = min(a.x0, b.x0), min(a.y0, b.y0), max(a.x1, b.x1), max(a.y1, b.y1)
    ink = np.zeros((y1 - y0, x1 - x0), np.float32)
    for g in (a, b):
        part = ink[g.y0 - y0:g.y1 - y0, g.x0 - x0:g.x1 - x0]
        np.maximum(part, g.ink, out=part)
    return Group(x0, y0, x1, y1, ink)


def _by_columns(spans: list[tuple[int, int, int]]) -> list[list[int]]:
    """Piece indices grouped: pieces whose column spans overlap by ``OVERLAP`` of the narrower one."""
    groups: list[tuple[int, int, list[int]]] = []
    for x0, x1, i in sorted(spans):
        if groups:
            g0, g1, ids = groups[-1]
            shared = min(x1, g1) - max(x0, g0)
            if shared >= OVERLAP * max(1, min(x1 - x0, g1 - g0)):
                groups[-1] = (min(g0, x0), max(g1, x1), ids + [i])
                continue
        groups.append((x0, x1, [i]))
    return [ids for _, _, ids in groups]


def cuts(group: Group, parts: int, tries: int = 4) -> list[list[int]]:
    """Ways to split ``group`` into ``parts`` digits: for each cut, the ``tries`` columns with the
    least ink near where an even split would put it (within a third of a part's width, a few
    pixels apart), combined."""
    profile = group.ink.sum(0)
    width = group.width
    per_cut = []
    for k in range(1, parts):
        centre = k * width / parts
        reach = max(1, int(width / parts / 3))
        lo, hi = max(1, int(centre - reach)), min(width - 1, int(centre + reach) + 1)
        chosen: list[int] = []
        for column in (lo + np.argsort(profile[lo:hi], kind="stable")).tolist() if hi > lo else [int(centre)]:
            if all(abs(column - c) >= 3 for c in chosen):
                chosen.append(int(column))
            if len(chosen) == tries:
                break
        per_cut.append(chosen or [int(centre)])
    return [sorted(combo) for combo in itertools.product(*per_cut)] if per_cut else [[]]


def split(group: Group, at: list[int]) -> list[Group]:
    """``group`` cut at the columns ``at`` (each part keeps its own ink box)."""
    parts = []
    edges = [0, *at, group.width]
    for a, b in zip(edges, edges[1:]):
        ink = group.ink[:, a:b]
        rows = np.flatnonzero(ink.sum(1) > 0)
        if rows.size == 0 or b <= a:
            continue
        parts.append(Group(group.x0 + a, group.y0 + int(rows[0]), group.x0 + b, group.y0 + int(rows[-1]) + 1,
                           ink[rows[0]:rows[-1] + 1]))
    return parts


def digit_input(group: Group) -> np.ndarray:
    """One group prepared as a single digit is: 28x28 uint8, fitted and centred as MNIST's."""
    return fit(group.ink)


def _slivers(box: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Which pieces (boxes x0, y0, x1, y1) are thin strips along the picture's edge: what is left
    of a sheet's or a table's edge in a photo, or a side of a frame drawn around the number (its
    top and bottom went with the notebook lines), not a digit. A strip touching the edge, or near
    it and running along most of it."""
    h, w = shape
    bw, bh = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    near_x = (box[:, 0] <= EDGE * w) | (box[:, 2] >= (1 - EDGE) * w)
    near_y = (box[:, 1] <= EDGE * h) | (box[:, 3] >= (1 - EDGE) * h)
    upright = (bw < np.maximum(3, SLIVER * bh)) & \
        (((box[:, 0] == 0) | (box[:, 2] == w)) | (near_x & (bh >= ALONG * h)))
    lying = (bh < np.maximum(3, SLIVER * bw)) & \
        (((box[:, 1] == 0) | (box[:, 3] == h)) | (near_y & (bw >= ALONG * w)))
    return upright | lying
