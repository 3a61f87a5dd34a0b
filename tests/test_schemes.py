"""Landmark schemes: flip permutations, named pairs, regions, lookup errors, and the flip convention on real faces.

Points are 0-based pixel centres, so mirroring an image of width W maps x to W - 1 - x; a mirrored face is then
renumbered with the scheme's flip permutation (the image's left eye becomes the right eye).
"""
from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest

from facelm.annotations import load_annotations
from facelm.augment import apply_geometry
from facelm.errors import UserError
from facelm.faces import decode_all
from facelm.geometry import crop_matrix
from facelm.schemes import SCHEME_68, get_scheme, scheme_for_count

each_scheme = pytest.mark.parametrize("scheme", [get_scheme(n) for n in ("68", "98", "106")], ids=lambda s: s.name)

# The region each named pair must lie in, and the pairs every scheme names.
PAIR_REGION = {
    "outer_eye_corners": "eyes",
    "inner_eye_corners": "eyes",
    "mouth_corners": "mouth",
    "jaw_ends": "jaw",
    "outer_brow_ends": "brows",
    "nostril_ends": "nose",
    "pupils": "eyes",
}
REQUIRED_PAIRS = {"outer_eye_corners", "inner_eye_corners", "mouth_corners", "jaw_ends", "outer_brow_ends"}

# 68-point (left, right) pairs as seen in the image: outer eye corners, mouth corners, jaw ends.
LEFT_RIGHT_68 = [(36, 45), (48, 54), (0, 16)]


@each_scheme
def test_flip_perm_is_a_permutation_and_an_involution(scheme):
    perm = np.asarray(scheme.flip_perm)
    assert sorted(perm.tolist()) == list(range(scheme.n_points))
    np.testing.assert_array_equal(perm[perm], np.arange(scheme.n_points))


@each_scheme
def test_named_pairs_and_eye_corners_swap_under_flip(scheme):
    perm = scheme.flip_perm
    assert REQUIRED_PAIRS <= set(scheme.named_pairs)
    for name, (a, b) in scheme.named_pairs.items():
        assert a != b and (perm[a], perm[b]) == (b, a), name
        region = scheme.regions[PAIR_REGION[name]]
        assert a in region and b in region, name
    a, b = scheme.eye_corners
    assert (perm[a], perm[b]) == (b, a)
    assert scheme.eye_corners == scheme.named_pairs["outer_eye_corners"]
    jaw = scheme.regions["jaw"]
    assert scheme.named_pairs["jaw_ends"] == (jaw[0], jaw[-1])


@each_scheme
def test_regions_partition_the_points(scheme):
    membership = Counter(i for indices in scheme.regions.values() for i in indices)
    assert all(0 <= i < scheme.n_points for i in membership)
    assert set(membership) == set(range(scheme.n_points))
    assert set(membership.values()) == {1}, "a point is in two regions"


@each_scheme
def test_regions_map_onto_themselves_under_flip(scheme):
    for name, indices in scheme.regions.items():
        assert {scheme.flip_perm[i] for i in indices} == set(indices), name


@pytest.mark.parametrize("name", ["67", "wflw", 5, ""])
def test_get_scheme_rejects_unknown_names(name):
    with pytest.raises(UserError) as info:
        get_scheme(name)
    assert "\n" not in str(info.value) and "68, 98, 106" in str(info.value)


@pytest.mark.parametrize("count", [0, 5, 67, 196])
def test_scheme_for_count_rejects_unknown_counts(count):
    with pytest.raises(UserError) as info:
        scheme_for_count(count)
    assert "\n" not in str(info.value) and str(count) in str(info.value)


@pytest.mark.parametrize("n", [68, 98, 106])
def test_lookups_find_known_schemes(n):
    assert get_scheme(n) is get_scheme(str(n)) is scheme_for_count(n)
    assert get_scheme(n).n_points == n


# --- the flip convention on real 300-W faces -------------------------------------------------------------


@pytest.fixture(scope="module")
def faces(data_root):
    """(RGB image, 68 points) for every 300-W test face; the crops are square."""
    samples = load_annotations(data_root / "300w" / "testset", SCHEME_68)
    images = decode_all([s.image for s in samples])
    assert all(img.shape[0] == img.shape[1] for img in images)
    return list(zip(images, [s.points for s in samples]))


def reflect(points: np.ndarray, width: int, offset: int = 1) -> np.ndarray:
    """Mirror x about the image's vertical centre line; offset=1 is the pixel-centre convention W - 1 - x."""
    out = points.copy()
    out[:, 0] = np.float32(width - offset) - out[:, 0]
    return out


def mirror_and_renumber(points: np.ndarray, width: int, perm, offset: int = 1) -> np.ndarray:
    return reflect(points, width, offset)[list(perm)]


def left_of_right_rate(point_sets: list[np.ndarray], left: int, right: int) -> float:
    return float(np.mean([pts[left, 0] < pts[right, 0] for pts in point_sets]))


def patch(grey: np.ndarray, point: np.ndarray, radius: int = 4) -> np.ndarray:
    """(2r+1)^2 patch centred on the pixel nearest `point` (round half up), zero-padded at the borders."""
    padded = cv2.copyMakeBorder(grey, radius, radius, radius, radius, cv2.BORDER_CONSTANT, value=0)
    col, row = (int(np.floor(v + 0.5)) + radius for v in point)
    return padded[row - radius : row + radius + 1, col - radius : col + radius + 1].astype(np.float32)


def mirrored_corner_diffs(faces, offset: int) -> np.ndarray:
    """Per face: mean |patch at original point 36, mirrored - patch of the mirrored image at renumbered point 45|."""
    diffs = []
    for image, points in faces:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        moved = mirror_and_renumber(points, grey.shape[1], SCHEME_68.flip_perm, offset)
        original, mirrored = patch(grey, points[36]), patch(cv2.flip(grey, 1), moved[45])
        diffs.append(np.abs(original[:, ::-1] - mirrored).mean())
    return np.asarray(diffs)


@pytest.mark.parametrize("left, right", LEFT_RIGHT_68)
def test_mirrored_faces_keep_left_points_left(faces, left, right):
    originals = [pts for _, pts in faces]
    flipped = [mirror_and_renumber(pts, img.shape[1], SCHEME_68.flip_perm) for img, pts in faces]
    assert left_of_right_rate(originals, left, right) >= 0.98
    assert left_of_right_rate(flipped, left, right) >= 0.98
    unrenumbered = [mirror_and_renumber(pts, img.shape[1], range(68)) for img, pts in faces]
    assert left_of_right_rate(unrenumbered, left, right) <= 0.02, "an identity permutation must fail this check"


def test_augmentation_flip_equals_mirror_then_renumber(faces):
    """facelm's mirrored crop (a full-image crop with flip=True) is cv2.flip plus x -> W-1-x plus flip_perm, exactly."""
    perm = SCHEME_68.flip_perm
    symmetric = [i for i in range(68) if perm[i] != i]
    errors, unrenumbered_errors = [], []
    for image, points in faces:
        width = image.shape[1]
        matrix = crop_matrix(((width - 1) / 2, (width - 1) / 2), width, width, flip=True)
        crop, moved = apply_geometry(image, points, matrix, True, perm, width)
        np.testing.assert_array_equal(crop, cv2.flip(image, 1))
        np.testing.assert_array_equal(moved, mirror_and_renumber(points, width, perm))
        reflected = reflect(points, width)
        errors.append(np.abs(moved[symmetric] - reflected[[perm[i] for i in symmetric]]).mean())
        unrenumbered_errors.append(np.abs(moved[symmetric] - reflected[symmetric]).mean())
    assert np.mean(errors) == 0.0
    assert np.mean(unrenumbered_errors) > 10.0


def test_mirrored_eye_corner_shows_the_mirrored_image_content(faces):
    diffs = mirrored_corner_diffs(faces, offset=1)
    assert diffs.max() < 2.0, f"worst face differs by {diffs.max():.2f} grey levels"
    off_by_one = mirrored_corner_diffs(faces, offset=0)
    assert np.median(off_by_one) > 4.0, "a mirror one pixel off (x -> W - x) must be detected"
