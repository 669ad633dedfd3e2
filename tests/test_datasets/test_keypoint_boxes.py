"""KeypointBoxes: landmarks and vertices follow their boxes through box methods and mmdet
transforms."""
import copy

import numpy as np
import pytest
import torch
from mmdet.datasets.transforms import Expand, MinIoURandomCrop, Pad, RandomCrop, RandomFlip, Resize
from mmdet.structures.bbox import HorizontalBoxes, get_box_type

from projects.retinaface.structures import KeypointBoxes


def corner_boxes(xyxy, valid=None, with_vertices=False):
    """Boxes whose 5 keypoints are (top-left, top-right, centre, bottom-left, bottom-right).

    This layout is invariant under a horizontal flip with the order [1, 0, 2, 4, 3], so after
    any transform keypoints must still equal the corners of their (unclipped) box.
    """
    b = np.asarray(xyxy, dtype=np.float32)
    x1, y1, x2, y2 = b.T
    kpts = np.stack([np.stack([x1, y1], 1), np.stack([x2, y1], 1),
                     np.stack([(x1 + x2) / 2, (y1 + y2) / 2], 1), np.stack([x1, y2], 1),
                     np.stack([x2, y2], 1)], axis=1)
    kw = {}
    if with_vertices:
        # two vertices: the centre with depth w, the top-left corner with depth 0
        verts = np.stack([np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1], 1),
                          np.stack([x1, y1, np.zeros_like(x1)], 1)], axis=1)
        kw = dict(vertices=verts, vertices_valid=np.ones(len(b), np.float32))
    return KeypointBoxes(b, keypoints=kpts, keypoints_valid=valid, **kw)


def assert_corner_layout(boxes, rows=None):
    t = boxes.tensor
    kp = boxes.keypoints
    rows = range(len(t)) if rows is None else rows
    for i in rows:
        x1, y1, x2, y2 = t[i].tolist()
        expect = torch.tensor([[x1, y1], [x2, y1], [(x1 + x2) / 2, (y1 + y2) / 2], [x1, y2],
                               [x2, y2]])
        torch.testing.assert_close(kp[i], expect, atol=1e-3, rtol=1e-5)


def test_registered_and_converts():
    assert get_box_type('kpt_hbox')[1] is KeypointBoxes
    b = corner_boxes([[0, 0, 10, 10]])
    assert isinstance(b, HorizontalBoxes)
    h = b.convert_to('hbox')
    assert type(h) is HorizontalBoxes and torch.equal(h.tensor, b.tensor)
    ious = b.overlaps(HorizontalBoxes(torch.tensor([[0., 0., 10., 5.]])), b)
    assert ious.item() == pytest.approx(0.5)


def test_flip_twice_is_identity_and_swaps_order():
    b = corner_boxes([[10, 20, 50, 80], [100, 5, 130, 60]], with_vertices=True)
    b.keypoints_valid[1, 0] = 0  # one invalid left eye
    orig = b.clone()
    for direction in ('horizontal', 'vertical', 'diagonal'):
        f = b.clone()
        f.flip_((200, 300), direction)
        if direction == 'horizontal':
            # mirrored x and swapped: the new point 0 is the old point 1, mirrored
            assert f.keypoints[0, 0, 0].item() == 300 - orig.keypoints[0, 1, 0].item()
            assert f.keypoints_valid[1].tolist() == [1, 0, 1, 1, 1]
            assert f.vertices[0, 0, 0].item() == 300 - orig.vertices[0, 0, 0].item()
            assert f.vertices[0, 0, 2].item() == orig.vertices[0, 0, 2].item()
        if direction == 'vertical':  # a mirror image too: mirrored y and swapped
            assert f.keypoints_valid[1].tolist() == [1, 0, 1, 1, 1]
            assert f.keypoints[0, 0, 1].item() == 200 - orig.keypoints[0, 1, 1].item()
            assert f.keypoints[0, 0, 0].item() == orig.keypoints[0, 1, 0].item()
        if direction == 'diagonal':  # a 180 degree rotation: both mirrored, no swap
            assert f.keypoints_valid[1].tolist() == [0, 1, 1, 1, 1]
            assert f.keypoints[0, 0].tolist() == [300 - orig.keypoints[0, 0, 0].item(),
                                                  200 - orig.keypoints[0, 0, 1].item()]
        f.flip_((200, 300), direction)
        assert torch.equal(f.tensor, orig.tensor)
        assert torch.equal(f.keypoints, orig.keypoints)
        assert torch.equal(f.keypoints_valid, orig.keypoints_valid)
        assert torch.equal(f.vertices, orig.vertices)


def test_flip_keeps_image_left_point_first():
    # a face seen from the front: point 0 (image-left eye) has the smaller x
    kp = np.array([[[30, 40], [50, 40], [40, 50], [32, 60], [48, 60]]], np.float32)
    b = KeypointBoxes([[20, 30, 60, 70]], keypoints=kp)
    b.flip_((100, 100), 'horizontal')
    assert b.keypoints[0, 0, 0] < b.keypoints[0, 1, 0]
    assert b.keypoints[0, 3, 0] < b.keypoints[0, 4, 0]
    assert b.keypoints[0, 2].tolist() == [60., 50.]


def test_indexing_keeps_fields_aligned():
    b = corner_boxes([[0, 0, 10, 10], [20, 20, 40, 50], [5, 5, 9, 9]], with_vertices=True)
    b.keypoints_valid[1] = 0
    b.vertices_valid[2] = 0
    for index in (np.array([False, True, True]), torch.tensor([2, 1]), [1, 2],
                  np.array([1, 2])):
        s = b[index]
        assert len(s) == 2 and s.keypoints.shape == (2, 5, 2) and s.vertices.shape == (2, 2, 3)
        assert_corner_layout(s)
        rows = [1, 2] if not (isinstance(index, torch.Tensor) and index[0] == 2) else [2, 1]
        assert s.keypoints_valid[:, 0].tolist() == [float(r != 1) for r in rows]
        assert s.vertices_valid.tolist() == [float(r != 2) for r in rows]
    one = b[1]
    assert one.tensor.shape == (1, 4) and one.keypoints.shape == (1, 5, 2)
    assert one.vertices_valid.shape == (1, )
    empty = b[np.zeros(3, bool)]
    assert empty.keypoints.shape == (0, 5, 2) and empty.vertices.shape == (0, 2, 3)


def test_copies_are_independent_and_cat():
    b = corner_boxes([[0, 0, 10, 10], [20, 20, 40, 50]])
    for c in (b.clone(), copy.deepcopy(b), b.to('cpu'), b.detach()):
        assert type(c) is KeypointBoxes and c.flip_indices == (1, 0, 2, 4, 3)
        assert torch.equal(c.keypoints, b.keypoints)
    c = b.clone()
    c.translate_([5, 5])
    assert b.keypoints[0, 0].tolist() == [0., 0.]
    cat = KeypointBoxes.cat([b, c])
    assert len(cat) == 4 and torch.equal(cat.keypoints[2:], c.keypoints)
    e = b.empty_boxes()
    assert len(e) == 0 and e.keypoints.shape == (0, 5, 2)
    with pytest.raises(ValueError, match='keypoints must have shape'):
        KeypointBoxes([[0, 0, 1, 1]], keypoints=np.zeros((2, 5, 2)))


def test_geometry_methods_move_points():
    b = corner_boxes([[10, 20, 30, 60]], with_vertices=True)
    r = b.clone()
    r.rescale_((2.0, 0.5))
    assert_corner_layout(r)
    assert r.vertices[0, 0, 2].item() == pytest.approx(20 * 1.0)  # z * sqrt(2 * 0.5)
    t = b.clone()
    t.translate_((-10, 5))
    assert_corner_layout(t)
    assert t.vertices[0, 1].tolist() == [0., 25., 0.]
    # projecting with a pure translation/scale homography keeps the corner layout
    p = b.clone()
    p.project_(np.array([[3, 0, 1], [0, 3, -2], [0, 0, 1]], dtype=np.float32))
    assert_corner_layout(p)
    assert p.vertices[0, 0, 2].item() == pytest.approx(20 * 3)
    # rotating by 90 degrees about the box centre maps keypoints with the same matrix
    q = b.clone()
    q.rotate_((20, 40), 90)
    c = q.keypoints[0, 2]
    torch.testing.assert_close(c, torch.tensor([20., 40.]))
    # point 0 (10, 20) rotated clockwise by 90 deg about (20, 40) in image coords -> (40, 30)
    torch.testing.assert_close(q.keypoints[0, 0], torch.tensor([40., 30.]), atol=1e-4,
                               rtol=0)
    # clip only clips boxes; keypoints keep coordinates and validity
    k = corner_boxes([[-10, -10, 20, 20]])
    k.clip_((15, 15))
    assert k.tensor[0].tolist() == [0., 0., 15., 15.]
    assert k.keypoints[0, 0].tolist() == [-10., -10.]
    assert k.keypoints_valid.sum().item() == 5


def _results(boxes, img_hw=(100, 120)):
    return dict(img=np.random.randint(0, 255, img_hw + (3, ), dtype=np.uint8),
                img_shape=img_hw, ori_shape=img_hw, gt_bboxes=boxes,
                gt_bboxes_labels=np.zeros(len(boxes), np.int64),
                gt_ignore_flags=np.array([False] * len(boxes)))


@pytest.mark.parametrize('transform', [
    RandomFlip(prob=1.0, direction='horizontal'),
    RandomFlip(prob=1.0, direction='vertical'),
    Resize(scale=(64, 48), keep_ratio=False),
    Pad(size=(160, 160)),
    Expand(mean=(0, 0, 0), to_rgb=False, ratio_range=(1, 3), prob=1.0),
])
def test_stock_transforms_move_landmarks(transform):
    np.random.seed(0)
    boxes = corner_boxes([[10, 20, 40, 60], [70, 30, 110, 90]],
                         valid=np.array([[1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], np.float32))
    out = transform(_results(boxes))
    b = out['gt_bboxes']
    assert isinstance(b, KeypointBoxes) and len(b) == 2
    if isinstance(transform, RandomFlip) and transform.direction == 'vertical':
        # vertical flip = mirror image: y mirrored and left/right swapped, so the old point 0
        # (top-left corner (10, 20)) is now point 1 at (10, 100 - 20)
        assert b.keypoints[0, 1].tolist() == [10., 100 - 20.]
    else:
        assert_corner_layout(b)
    assert b.keypoints_valid[1].sum().item() == 0  # invalid stays invalid
    assert b.keypoints_valid[0].sum().item() == 5


@pytest.mark.parametrize('seed', range(4))
def test_stock_crops_keep_landmarks_aligned(seed):
    np.random.seed(seed)
    boxes = corner_boxes([[10, 20, 40, 60], [60, 30, 90, 70], [5, 70, 25, 95]])
    crops = [RandomCrop(crop_size=(80, 80), allow_negative_crop=True, bbox_clip_border=False),
             MinIoURandomCrop(bbox_clip_border=False)]
    for crop in crops:
        out = crop(_results(boxes.clone()))
        if out is None:
            continue
        b = out['gt_bboxes']
        assert len(b) == len(out['gt_bboxes_labels']) == len(out['gt_ignore_flags'])
        assert_corner_layout(b)


def test_diagonal_flip_equals_rotation_by_180_degrees():
    """A diagonal flip is a 180 degree rotation of the image: same boxes, same keypoint order as
    rotate_; a vertical flip equals rotating by 180 degrees then flipping horizontally."""
    b = corner_boxes([[40, 30, 60, 70]])
    b.keypoints[0] = torch.tensor([[40., 40.], [60., 40.], [50., 50.], [42., 60.], [58., 60.]])
    img_shape = (100, 200)
    diag = b.clone()
    diag.flip_(img_shape, 'diagonal')
    rot = b.clone()
    rot.rotate_((100., 50.), 180)  # centre (x, y) of the 200 x 100 image
    torch.testing.assert_close(diag.tensor, rot.tensor, atol=1e-4, rtol=0)
    torch.testing.assert_close(diag.keypoints, rot.keypoints, atol=1e-4, rtol=0)
    vert = b.clone()
    vert.flip_(img_shape, 'vertical')
    rot.flip_(img_shape, 'horizontal')
    torch.testing.assert_close(vert.keypoints, rot.keypoints, atol=1e-4, rtol=0)
