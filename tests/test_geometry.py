"""Crop geometry and augmentation: points must follow the pixels under every transform, flips renumber points."""
from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch

from facelm.annotations import Sample, load_annotations
from facelm.augment import GeometryConfig, LightCast, apply_geometry, photometric_pipeline, random_crop_matrix
from facelm.dataset import LandmarkCrops, LoadedSource, Source
from facelm.geometry import (
    EVAL_CROP_SCALE,
    crop_matrix,
    crop_to_image,
    crop_to_normalised,
    eval_crop_matrix,
    landmark_box,
    normalised_to_crop,
    transform_points,
)
from facelm.preprocess import INPUT_MEAN, INPUT_STD
from facelm.schemes import SCHEME_68

PERM = SCHEME_68.flip_perm
CANVAS = 200
SIZE = 96
TOL_PX = 0.3
SEEDS = [0, 1, 2]
# Crops loose enough that every point stays well inside them under 20 degrees of rotation and 5% jitter.
SAFE = dict(scale_min=1.6, scale_max=1.9, jitter=0.05, rotation=20.0)


def face_layout(rng: np.random.Generator, noise: float = 0.0) -> np.ndarray:
    """68 points mirror-symmetric about x = CANVAS/2 (per the flip permutation), plus optional noise."""
    points = np.zeros((68, 2))
    for i, j in enumerate(PERM):
        if i <= j:
            points[i] = (0.0 if i == j else -rng.uniform(8, 50), rng.uniform(-50, 50))
            points[j] = (-points[i, 0], points[i, 1])
    return points + CANVAS / 2 + rng.normal(0, noise, points.shape)


def dot_image(point: np.ndarray, sigma: float = 2.5) -> np.ndarray:
    """Float32 black canvas with one Gaussian dot centred on a sub-pixel point (pixel-centre coordinates)."""
    ys, xs = np.mgrid[0:CANVAS, 0:CANVAS]
    return np.exp(-((xs - point[0]) ** 2 + (ys - point[1]) ** 2) / (2 * sigma**2)).astype(np.float32)


def centroid(image: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    return np.array([(xs * image).sum(), (ys * image).sum()]) / image.sum()


def assert_inside(points: np.ndarray, margin: float = 6.0) -> None:
    assert points.min() > margin and points.max() < SIZE - 1 - margin, "a dot would be cut by the crop edge"


def check_dots_follow(points: np.ndarray, matrix: np.ndarray, flip: bool) -> None:
    """Warp one dot per landmark; the dot painted for original point owner[i] must land on moved[i]."""
    found = []
    for point in points:
        crop, moved = apply_geometry(dot_image(point), points, matrix, flip, PERM, SIZE)
        found.append(centroid(crop))
    owner = list(PERM) if flip else list(range(68))
    assert_inside(moved)
    np.testing.assert_allclose(np.array(found)[owner], moved, atol=TOL_PX)


def transform_case(kind: str, points: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """One kind of transform at a time ("combined": all of them) on a crop around the landmark box."""
    cx, cy, side = landmark_box(points)
    active = {kind} if kind != "combined" else {"rotation", "scale", "shift", "flip"}
    shift = rng.uniform(-0.05, 0.05, 2) * side if "shift" in active else np.zeros(2)
    scale = rng.uniform(1.5, 2.2) if "scale" in active else 1.7
    rotation = rng.choice([-1, 1]) * rng.uniform(10, 20) if "rotation" in active else 0.0
    flip = "flip" in active
    return crop_matrix((cx + shift[0], cy + shift[1]), side * scale, SIZE, rotation, flip), flip


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["rotation", "scale", "shift", "flip", "combined"])
def test_points_follow_image_under_each_transform(kind, seed):
    rng = np.random.default_rng(seed)
    points = face_layout(rng, noise=1.0)
    matrix, flip = transform_case(kind, points, rng)
    check_dots_follow(points, matrix, flip)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_points_follow_image_under_random_crop(flip_prob, seed):
    rng = np.random.default_rng(seed)
    points = face_layout(rng, noise=1.0)
    matrix, flip = random_crop_matrix(points, SIZE, GeometryConfig(**SAFE, flip_prob=flip_prob), rng)
    assert flip == (flip_prob == 1.0)
    check_dots_follow(points, matrix, flip)


def test_mirrored_crop_of_symmetric_face_renumbers_to_the_unmirrored_one():
    points = face_layout(np.random.default_rng(3))
    cx, cy, side = landmark_box(points)
    image = dot_image(points[0])
    _, plain = apply_geometry(image, points, crop_matrix((cx, cy), side * 1.5, SIZE), False, PERM, SIZE)
    _, mirrored = apply_geometry(image, points, crop_matrix((cx, cy), side * 1.5, SIZE, flip=True), True, PERM, SIZE)
    np.testing.assert_allclose(mirrored, plain, atol=1e-4)


def test_positive_rotation_turns_content_counter_clockwise_on_screen():
    matrix = crop_matrix((50.0, 50.0), 64.0, 64, rotation_deg=90.0)
    right_of_centre = transform_points(np.array([[60.0, 50.0]]), matrix)[0]
    np.testing.assert_allclose(right_of_centre, [31.5, 21.5], atol=1e-4)  # moved up (smaller y)


@pytest.mark.parametrize("seed", SEEDS)
def test_crop_to_image_inverts_the_crop(seed):
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 300, (68, 2))
    matrix = crop_matrix(tuple(rng.uniform(100, 200, 2)), rng.uniform(80, 200), 112, rng.uniform(-30, 30), bool(seed % 2))
    normalised = crop_to_normalised(transform_points(points, matrix), 112)
    np.testing.assert_allclose(crop_to_image(normalised, matrix, 112), points, atol=1e-4)


def test_normalised_coordinates_convention():
    size, centre, side = 64, (40.3, 71.7), 50.0
    np.testing.assert_allclose(crop_to_normalised(np.array([[0.0, 0.0]]), size), [[0.5 / size] * 2])
    np.testing.assert_allclose(normalised_to_crop(np.array([[0.5 / size, 1.0]]), size), [[0.0, size - 0.5]])
    matrix = crop_matrix(centre, side, size)
    np.testing.assert_allclose(transform_points(np.array([centre]), matrix), [[(size - 1) / 2] * 2], atol=1e-5)
    edges = transform_points(np.array([[centre[0] + side / 2, centre[1] - side / 2]]), matrix)
    np.testing.assert_allclose(crop_to_normalised(edges, size), [[1.0, 0.0]], atol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_eval_crop_box_fills_its_share_of_the_crop(seed):
    points = np.random.default_rng(seed).uniform(20, 180, (68, 2)) * [1.0, 0.6]
    moved = transform_points(points, eval_crop_matrix(points, SIZE))
    cx, cy, side = landmark_box(moved)
    assert side == pytest.approx(SIZE / EVAL_CROP_SCALE, abs=1e-3)
    assert (cx, cy) == pytest.approx(((SIZE - 1) / 2, (SIZE - 1) / 2), abs=1e-3)


def synthetic_crops(points: np.ndarray, train: bool, flip_prob: float = 0.5) -> LandmarkCrops:
    """68 samples sharing one landmark layout; sample j shows only the dot of point j. Point 36 has weight 0."""
    images = [np.repeat(np.round(255 * dot_image(p))[..., None], 3, -1).astype(np.uint8) for p in points]
    weight = np.where(np.arange(68) == 36, 0.0, 1.0).astype(np.float32)
    loaded = LoadedSource(
        Source("synthetic", SCHEME_68, Path("synthetic")),
        [Sample(Path(f"dot{j}.png"), points.astype(np.float32)) for j in range(68)],
        images,
        [weight] * 68,
    )
    crops = LandmarkCrops([loaded], SIZE, train=train, geometry=GeometryConfig(**SAFE, flip_prob=flip_prob))
    if train:
        crops.photometric = A.Compose([])  # geometry only here; the photometric pipeline is tested on its own
    return crops


def dot_in_item(item: dict) -> np.ndarray:
    image = item["image"].numpy().transpose(1, 2, 0) * INPUT_STD + INPUT_MEAN
    return centroid(np.clip(image.mean(-1), 0, None))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_train_crops_targets_and_weights_follow_the_image(flip_prob, seed):
    points = face_layout(np.random.default_rng(seed), noise=1.0)
    crops = synthetic_crops(points, train=True, flip_prob=flip_prob)
    found, targets = [], []
    for j in range(68):
        crops.reseed(seed)
        item = crops[j]
        found.append(dot_in_item(item))
        targets.append(item["target"].numpy())
    assert item["image"].shape == (3, SIZE, SIZE) and item["head"] == 0
    assert all(np.array_equal(t, targets[0]) for t in targets), "reseeding must replay the same geometry"
    moved = normalised_to_crop(targets[0], SIZE)
    owner = list(PERM) if flip_prob else list(range(68))
    assert_inside(moved)
    np.testing.assert_allclose(np.array(found)[owner], moved, atol=TOL_PX)
    zero = 45 if flip_prob else 36  # the unsupervised point keeps its weight under its new (mirrored) index
    assert np.flatnonzero(item["weight"].numpy() == 0).tolist() == [zero]


def test_eval_crops_are_deterministic_and_match_the_eval_rule():
    points = face_layout(np.random.default_rng(5), noise=1.0)
    crops = synthetic_crops(points, train=False)
    first, second = crops[7], crops[7]
    for key in ("image", "target", "weight"):
        assert np.array_equal(first[key].numpy(), second[key].numpy())
    expected = crop_to_normalised(transform_points(points, eval_crop_matrix(points, SIZE)), SIZE)
    np.testing.assert_allclose(first["target"].numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(dot_in_item(first), normalised_to_crop(expected[7], SIZE), atol=TOL_PX)


@pytest.mark.parametrize("seed", SEEDS)
def test_photometric_pipeline_keeps_shape_and_dtype(seed):
    pipeline = photometric_pipeline()
    pipeline.set_random_seed(seed)
    image = np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    outputs = [pipeline(image=image)["image"] for _ in range(10)]
    assert all(out.shape == image.shape and out.dtype == np.uint8 for out in outputs)
    assert any(not np.array_equal(out, image) for out in outputs)


@pytest.mark.parametrize("seed", SEEDS)
def test_light_cast_tints_a_grey_image(seed):
    cast = LightCast(p=1.0)
    cast.set_random_seed(seed)
    out = cast(image=np.full((8, 8, 3), 200, np.uint8))["image"]
    channels = out.reshape(-1, 3)[0].astype(int)
    assert out.dtype == np.uint8 and len(set(channels)) > 1
    assert channels.max() == 200 and channels.min() < 200  # one channel keeps gain 1, the others are dimmed


def test_flip_permutation_mirrors_the_mean_real_face(data_root):
    """Mirror every 300-W test face about its box centre and renumber: point i must land nearest the mean face's i."""
    faces = [sample.points for sample in load_annotations(data_root / "300w" / "testset", SCHEME_68)]

    def mean_shape(flip: bool) -> np.ndarray:
        boxes = [landmark_box(points) for points in faces]
        return np.mean([transform_points(p, crop_matrix(b[:2], b[2], 100, flip=flip)) for p, b in zip(faces, boxes)], 0)

    plain, mirrored = mean_shape(False), mean_shape(True)[list(PERM)]
    mirrored += plain.mean(0) - mirrored.mean(0)  # the average head is slightly turned; compare shapes only
    distances = np.linalg.norm(plain[:, None] - mirrored[None], axis=-1)
    assert (distances.argmin(axis=1) == np.arange(68)).all()


def test_seeded_batches_make_an_epoch_independent_of_workers_and_of_the_epochs_before_it(monkeypatch):
    """Each batch carries its augmentation seed, drawn from (seed, epoch): the crops are the same with 0 or 2 loader
    workers, and a loader that replays only the index draws of epoch 1 (a resumed run) gives epoch 2's exact crops
    without augmenting a single image."""
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler

    from facelm.dataset import SeededBatches
    from facelm.engine import skip_trained_draws

    crops = synthetic_crops(face_layout(np.random.default_rng(0), noise=1.0), train=True, flip_prob=0.5)
    crops.photometric = photometric_pipeline(1.0)

    def loader(workers: int) -> DataLoader:
        draws = RandomSampler(range(len(crops)), num_samples=24, generator=torch.Generator().manual_seed(5))
        return DataLoader(crops, batch_sampler=SeededBatches(BatchSampler(draws, 8, drop_last=True), seed=5),
                          num_workers=workers, persistent_workers=workers > 0)

    def epoch(batches: DataLoader) -> list[np.ndarray]:
        return [batch["image"].numpy() for batch in batches]

    whole = loader(0)
    first, second = epoch(whole), epoch(whole)
    assert not np.allclose(first[0], second[0])
    with_workers = loader(2)
    assert all(np.array_equal(a, b) for a, b in zip(first + second, epoch(with_workers) + epoch(with_workers)))
    resumed = loader(0)
    with monkeypatch.context() as patched:
        patched.setattr(LandmarkCrops, "__getitems__", lambda self, batch: pytest.fail("the replay augmented images"))
        skip_trained_draws(resumed, 1)
    assert all(np.array_equal(a, b) for a, b in zip(second, epoch(resumed)))
