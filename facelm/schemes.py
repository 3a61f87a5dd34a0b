"""Landmark schemes: point count, flip permutation, inter-ocular indices and named regions.

Indices are 0-based. "Left" and "right" are as seen in the image (the subject's right eye is on
the image's left), which is how 300-W, WFLW and JD-landmark number their points.
"""
from __future__ import annotations

from dataclasses import dataclass

from facelm.errors import UserError


@dataclass(frozen=True)
class Scheme:
    name: str
    n_points: int
    flip_perm: tuple[int, ...]
    eye_corners: tuple[int, int]
    regions: dict[str, tuple[int, ...]]
    named_pairs: dict[str, tuple[int, int]]


def _mirror_pairs_to_perm(n: int, pairs: list[tuple[int, int]]) -> tuple[int, ...]:
    perm = list(range(n))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


def _span(a: int, b: int) -> tuple[int, ...]:
    return tuple(range(a, b + 1))


def _reversed_span_pairs(a: int, b: int) -> list[tuple[int, int]]:
    return [(a + i, b - i) for i in range((b - a + 1) // 2)]


_PAIRS_68 = (
    _reversed_span_pairs(0, 16)
    + _reversed_span_pairs(17, 26)
    + _reversed_span_pairs(31, 35)
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]
    + [(60, 64), (61, 63), (65, 67)]
)

SCHEME_68 = Scheme(
    name="68",
    n_points=68,
    flip_perm=_mirror_pairs_to_perm(68, _PAIRS_68),
    eye_corners=(36, 45),
    regions={
        "jaw": _span(0, 16),
        "brows": _span(17, 26),
        "nose": _span(27, 35),
        "eyes": _span(36, 47),
        "mouth": _span(48, 67),
    },
    named_pairs={
        "outer_eye_corners": (36, 45),
        "inner_eye_corners": (39, 42),
        "mouth_corners": (48, 54),
        "jaw_ends": (0, 16),
        "outer_brow_ends": (17, 26),
        "nostril_ends": (31, 35),
    },
)

_PAIRS_98 = (
    _reversed_span_pairs(0, 32)
    + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47)]
    + [(55, 59), (56, 58)]
    + [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]
    + [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86)]
    + [(88, 92), (89, 91), (93, 95), (96, 97)]
)

SCHEME_98 = Scheme(
    name="98",
    n_points=98,
    flip_perm=_mirror_pairs_to_perm(98, _PAIRS_98),
    eye_corners=(60, 72),
    regions={
        "jaw": _span(0, 32),
        "brows": _span(33, 50),
        "nose": _span(51, 59),
        "eyes": _span(60, 75) + (96, 97),
        "mouth": _span(76, 95),
    },
    named_pairs={
        "outer_eye_corners": (60, 72),
        "inner_eye_corners": (64, 68),
        "mouth_corners": (76, 82),
        "jaw_ends": (0, 32),
        "outer_brow_ends": (33, 46),
        "pupils": (96, 97),
    },
)

_PAIRS_106 = (
    _reversed_span_pairs(0, 32)
    + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47)]
    + _reversed_span_pairs(55, 65)
    + [(66, 79), (67, 78), (68, 77), (69, 76), (70, 75), (71, 82), (72, 81), (73, 80), (74, 83)]
    + [(84, 90), (85, 89), (86, 88), (91, 95), (92, 94)]
    + [(96, 100), (97, 99), (101, 103), (104, 105)]
)

SCHEME_106 = Scheme(
    name="106",
    n_points=106,
    flip_perm=_mirror_pairs_to_perm(106, _PAIRS_106),
    eye_corners=(66, 79),
    regions={
        "jaw": _span(0, 32),
        "brows": _span(33, 50),
        "nose": _span(51, 65),
        "eyes": _span(66, 83) + (104, 105),
        "mouth": _span(84, 103),
    },
    named_pairs={
        "outer_eye_corners": (66, 79),
        "inner_eye_corners": (70, 75),
        "mouth_corners": (84, 90),
        "jaw_ends": (0, 32),
        "outer_brow_ends": (33, 46),
        "pupils": (104, 105),
    },
)

SCHEMES: dict[str, Scheme] = {s.name: s for s in (SCHEME_68, SCHEME_98, SCHEME_106)}


def get_scheme(name: str | int) -> Scheme:
    key = str(name)
    if key not in SCHEMES:
        raise UserError(f"unknown landmark scheme {name!r}: choose one of {', '.join(SCHEMES)}")
    return SCHEMES[key]


def scheme_for_count(n_points: int) -> Scheme:
    for scheme in SCHEMES.values():
        if scheme.n_points == n_points:
            return scheme
    raise UserError(f"no landmark scheme has {n_points} points: supported counts are 68, 98, 106")
