"""Face / head crop boxes and five-point ArcFace alignment on exactly constructed inputs."""
import numpy as np
import pytest

from projects.retinaface.apis import (
    ARCFACE_TEMPLATE,
    align_face,
    align_faces,
    arcface_template,
    crop_boxes,
    crop_faces,
    crop_heads,
    estimate_similarity,
    face_boxes,
    head_boxes,
    transform_points,
)


def similarity(scale, angle_deg, tx, ty):
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.concatenate([scale * rot, [[tx], [ty]]], axis=1)


def invert(matrix):
    full = np.vstack([matrix, [0, 0, 1]])
    return np.linalg.inv(full)[:2]


def test_head_boxes_exact_and_clipped():
    # w = 40, h = 50, cx = 120: width 60 centred, 30 above, 10 below.
    box = [100., 100., 140., 150.]
    np.testing.assert_allclose(head_boxes(box), [[90., 70., 150., 160.]])
    np.testing.assert_allclose(
        head_boxes(box, width_factor=2.0, top_factor=0.5, bottom_factor=0.0),
        [[80., 75., 160., 150.]])
    # Near the border: x -10..50 and y -25..65 clip to a 50 x 60 image.
    border = [0., 5., 40., 55.]
    np.testing.assert_allclose(head_boxes(border), [[-10., -25., 50., 65.]])
    np.testing.assert_allclose(head_boxes(border, img_shape=(60, 50)), [[0., 0., 50., 60.]])
    img = np.arange(60 * 50 * 3, dtype=np.uint8).reshape(60, 50, 3)
    crops = crop_heads(img, [border, box])
    assert crops[0].shape == (60, 50, 3) and (crops[0] == img).all()
    assert crops[1].size == 0  # entirely outside the image
    with pytest.raises(ValueError):
        head_boxes(box, width_factor=0)


def test_face_boxes_margin_square_and_clip():
    box = [10., 20., 50., 100.]  # w = 40, h = 80
    np.testing.assert_allclose(face_boxes(box, margin=0.1), [[6., 12., 54., 108.]])
    np.testing.assert_allclose(face_boxes(box, square=True), [[-10., 20., 70., 100.]])
    np.testing.assert_allclose(
        face_boxes(box, margin=0.1, square=True), [[-18., 12., 78., 108.]])
    np.testing.assert_allclose(
        face_boxes(box, img_shape=(100, 60), margin=0.1, square=True), [[0., 12., 60., 100.]])
    img = np.random.default_rng(0).integers(0, 255, (100, 60, 3), dtype=np.uint8)
    crop = crop_faces(img, box)[0]
    assert (crop == img[20:100, 10:50]).all()
    with pytest.raises(ValueError, match='bboxes must have shape'):
        face_boxes([1., 2., 3.])


def test_crop_boxes_round_outwards():
    img = np.arange(20 * 20, dtype=np.uint8).reshape(20, 20)
    crop = crop_boxes(img, [[2.5, 3.2, 7.1, 9.9]])[0]
    assert (crop == img[3:10, 2:8]).all()


def test_estimate_similarity_recovers_known_transform():
    matrix = similarity(2.5, 30.0, 12.0, -7.0)
    src = ARCFACE_TEMPLATE
    dst = transform_points(src, matrix)
    np.testing.assert_allclose(estimate_similarity(src, dst), matrix, atol=1e-9)
    # Least squares: a noisy copy gives the transform closest to the noise-free one.
    noisy = dst + np.random.default_rng(1).normal(0, 0.01, dst.shape)
    np.testing.assert_allclose(estimate_similarity(src, noisy), matrix, atol=0.02)
    with pytest.raises(ValueError, match='all equal'):
        estimate_similarity(np.ones((5, 2)), dst)


def gaussian_blobs(shape, points, sigma=2.5):
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    img = np.zeros(shape, np.float64)
    for x, y in points:
        img += np.exp(-((xs - x)**2 + (ys - y)**2) / (2 * sigma**2))
    return img


def test_align_face_maps_landmarks_onto_template():
    # Image landmarks are a known similarity transform of the template (crop -> image).
    to_image = similarity(1.7, 25.0, 90.0, 60.0)
    kpts = transform_points(ARCFACE_TEMPLATE, to_image)
    blobs = gaussian_blobs((320, 300), kpts)
    img = np.repeat((blobs * 250).clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)

    crop, matrix = align_face(img, kpts)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    np.testing.assert_allclose(matrix, invert(to_image), atol=1e-9)
    np.testing.assert_allclose(transform_points(kpts, matrix), ARCFACE_TEMPLATE, atol=1e-6)

    # The blobs in the crop sit on the template points (intensity centroids, 0.5 px).
    gray = crop[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0:112, 0:112]
    for tx, ty in ARCFACE_TEMPLATE:
        win = (np.abs(xs - tx) <= 7) & (np.abs(ys - ty) <= 7)
        w = gray * win
        cx, cy = (w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()
        assert abs(cx - tx) < 0.5 and abs(cy - ty) < 0.5, ((cx, cy), (tx, ty))


def test_align_faces_batch_and_size():
    img = np.random.default_rng(2).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    kpts = np.stack([
        transform_points(ARCFACE_TEMPLATE, similarity(1.0, 0.0, 10.0, 20.0)),
        transform_points(ARCFACE_TEMPLATE, similarity(0.8, -10.0, 60.0, 50.0)),
    ])
    crops = align_faces(img, kpts)
    assert len(crops) == 2 and all(c.shape == (112, 112, 3) for c in crops)
    # A pure translation by whole pixels reproduces the image patch exactly.
    assert (crops[0] == img[20:132, 10:122]).all()
    crop, matrix = align_face(img, kpts[0], image_size=224)
    assert crop.shape == (224, 224, 3)
    np.testing.assert_allclose(transform_points(kpts[0], matrix), arcface_template(224),
                               atol=1e-6)
    with pytest.raises(ValueError, match='differ in shape'):
        align_face(img, kpts[0][:4])
    bad = kpts[0].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match='finite'):
        align_face(img, bad)
