"""FaceLocalVisualizer draws landmarks at their coordinates, one colour per index, valid only."""
import itertools

import numpy as np
import pytest
import torch
from mmdet.registry import VISUALIZERS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.structures import InstanceData

from projects.retinaface.visualization import LANDMARK_COLORS, FaceLocalVisualizer, draw_faces

_names = itertools.count()

KPTS = [[40., 50.], [80., 50.], [60., 70.], [45., 92.], [75., 92.]]
KPTS2 = [[120., 20.], [140., 20.], [130., 32.], [122., 44.], [138., 44.]]


def make_visualizer(**kwargs):
    vis = FaceLocalVisualizer(name=f'face_vis_test_{next(_names)}', **kwargs)
    vis.dataset_meta = dict(classes=('face', ), palette=[(0, 255, 0)])
    return vis


def pixel(img, point):
    x, y = point
    return tuple(int(v) for v in img[int(y), int(x)])


def instances(bboxes, keypoints, scores=None, **extra):
    inst = InstanceData()
    inst.bboxes = torch.tensor(bboxes, dtype=torch.float32)
    inst.labels = torch.zeros(len(bboxes), dtype=torch.long)
    if scores is not None:
        inst.scores = torch.tensor(scores, dtype=torch.float32)
    if keypoints is not None:
        inst.keypoints = torch.tensor(keypoints, dtype=torch.float32)
    for k, v in extra.items():
        inst.set_field(v, k)
    return inst


def test_registered():
    vis = VISUALIZERS.build(dict(type='FaceLocalVisualizer', name=f'reg_{next(_names)}'))
    assert isinstance(vis, FaceLocalVisualizer)


def test_pred_landmarks_drawn_with_index_colours_and_score_threshold():
    vis = make_visualizer()
    img = np.zeros((120, 160, 3), np.uint8)
    sample = DetDataSample()
    sample.pred_instances = instances(
        [[20., 20., 100., 110.], [110., 5., 150., 55.]], [KPTS, KPTS2], scores=[0.9, 0.1])
    vis.add_datasample('pred', img, sample, draw_gt=False, pred_score_thr=0.3)
    out = vis.get_image()
    assert out.shape == img.shape
    for k, point in enumerate(KPTS):
        assert pixel(out, point) == LANDMARK_COLORS[k], (k, point)
    # The face below pred_score_thr is not drawn: its landmark pixels stay black.
    for point in KPTS2:
        assert pixel(out, point) == (0, 0, 0)
    # Far from boxes and points nothing changes.
    assert pixel(out, (155, 115)) == (0, 0, 0)

    # With a lower threshold the second face's landmarks appear too.
    vis.add_datasample('pred', img, sample, draw_gt=False, pred_score_thr=0.05)
    out = vis.get_image()
    for k, point in enumerate(KPTS2):
        assert pixel(out, point) == LANDMARK_COLORS[k]


def test_gt_only_valid_landmarks_and_horizontal_boxes():
    vis = make_visualizer()
    img = np.zeros((120, 160, 3), np.uint8)
    sample = DetDataSample()
    gt = instances([[20., 20., 100., 110.], [110., 5., 150., 55.]], [KPTS, KPTS2],
                   keypoints_valid=torch.tensor([[1., 1., 0., 1., 0.], [0., 0., 0., 0., 0.]]))
    gt.bboxes = HorizontalBoxes(gt.bboxes)
    sample.gt_instances = gt
    vis.add_datasample('gt', img, sample, draw_pred=False)
    out = vis.get_image()
    for k in (0, 1, 3):
        assert pixel(out, KPTS[k]) == LANDMARK_COLORS[k]
    for k in (2, 4):
        assert pixel(out, KPTS[k]) == (0, 0, 0)
    for point in KPTS2:
        assert pixel(out, point) == (0, 0, 0)
    # The GT box edge was drawn (HorizontalBoxes are accepted).
    assert out[60, 18:23].any()


def test_gt_mapped_from_input_to_original_image():
    vis = make_visualizer()
    img = np.zeros((120, 160, 3), np.uint8)
    sample = DetDataSample(metainfo=dict(
        ori_shape=(120, 160), img_shape=(240, 320), scale_factor=(2.0, 2.0)))
    scaled = (torch.tensor([KPTS]) * 2).tolist()
    sample.gt_instances = instances([[40., 40., 200., 220.]], scaled,
                                    keypoints_valid=torch.ones(1, 5))
    vis.add_datasample('gt', img, sample, draw_pred=False)
    out = vis.get_image()
    for k, point in enumerate(KPTS):
        assert pixel(out, point) == LANDMARK_COLORS[k]
    # The caller's data sample is not modified.
    assert sample.gt_instances.keypoints[0, 0].tolist() == [80., 100.]

    # Drawing on the network input (its img_shape) uses the coordinates unchanged.
    big = np.zeros((240, 320, 3), np.uint8)
    vis.add_datasample('gt', big, sample, draw_pred=False)
    out = vis.get_image()
    for k, point in enumerate(scaled[0]):
        assert pixel(out, point) == LANDMARK_COLORS[k]


def test_missing_invalid_and_empty_landmarks_do_not_crash():
    vis = make_visualizer()
    img = np.full((64, 64, 3), 30, np.uint8)
    # No keypoints at all: plain boxes.
    sample = DetDataSample()
    sample.pred_instances = instances([[5., 5., 40., 40.]], None, scores=[0.9])
    vis.add_datasample('a', img, sample, draw_gt=False)
    assert vis.get_image().shape == img.shape
    # Non-finite landmark coordinates are skipped, the finite ones drawn.
    kpts = [[[10., 10.], [float('nan'), 12.], [20., 20.], [float('inf'), 5.], [30., 30.]]]
    sample.pred_instances = instances([[5., 5., 40., 40.]], kpts, scores=[0.9])
    vis.add_datasample('b', img, sample, draw_gt=False)
    out = vis.get_image()
    assert pixel(out, (20, 20)) == LANDMARK_COLORS[2]
    assert pixel(out, (30, 30)) == LANDMARK_COLORS[4]
    # No instances at all.
    sample.pred_instances = instances(np.zeros((0, 4)), np.zeros((0, 5, 2)), scores=[])
    vis.add_datasample('c', img, sample, draw_gt=False)
    assert (vis.get_image() == img).all()
    # Badly shaped keypoints give a clear error.
    sample.pred_instances = instances([[5., 5., 40., 40.]], [[1., 2., 3.]], scores=[0.9])
    with pytest.raises(ValueError, match='keypoints must have shape'):
        vis.add_datasample('d', img, sample, draw_gt=False)


def test_vertices_drawn():
    vis = make_visualizer(vertex_color=(0, 255, 255), vertex_radius=1.5)
    img = np.zeros((64, 64, 3), np.uint8)
    sample = DetDataSample()
    verts = torch.tensor([[[50., 10., 0.], [55., 20., 1.]]])
    sample.pred_instances = instances([[5., 5., 40., 40.]], [[[10., 10.]] * 5], scores=[0.9],
                                      vertices=verts)
    vis.add_datasample('v', img, sample, draw_gt=False)
    out = vis.get_image()
    assert pixel(out, (50, 10)) == (0, 255, 255)
    assert pixel(out, (55, 20)) == (0, 255, 255)
    vis = make_visualizer(draw_vertices=False)
    vis.add_datasample('v', img, sample, draw_gt=False)
    assert pixel(vis.get_image(), (50, 10)) == (0, 0, 0)


def test_draw_faces_opencv_fast_path():
    """draw_faces (video / camera): BGR in, BGR out, input untouched, one RGB colour per
    landmark index as the visualiser, faces at or below the threshold and non-finite points
    left out."""
    img = np.zeros((120, 160, 3), np.uint8)
    boxes = torch.tensor([[30., 40., 90., 100.], [110., 10., 150., 50.]])
    scores = torch.tensor([0.9, 0.5])
    kpts = torch.tensor([KPTS, KPTS2])
    kpts[0, 4] = float('nan')
    out = draw_faces(img, HorizontalBoxes(boxes), scores, kpts, score_thr=0.5,
                     box_color=(0, 200, 255))
    assert out.shape == img.shape and out.dtype == np.uint8 and not img.any()
    for k in range(4):  # BGR on the image
        assert pixel(out, KPTS[k]) == tuple(LANDMARK_COLORS[k][::-1])
    assert pixel(out, KPTS[4]) == (0, 0, 0)  # NaN point skipped
    assert pixel(out, (60, 40)) == (255, 200, 0)  # top edge of the first box, BGR
    assert pixel(out, (60, 70)) == tuple(LANDMARK_COLORS[2][::-1])
    assert not out[:, 105:].any()  # the 0.5 face is not drawn (score must exceed the threshold)
    with_thr = draw_faces(img, boxes, scores, kpts, score_thr=0.4)
    assert pixel(with_thr, KPTS2[2]) == tuple(LANDMARK_COLORS[2][::-1])
    boxes_only = draw_faces(img, boxes.numpy())  # no scores, no landmarks: every box
    assert boxes_only[:, 105:].any() and pixel(boxes_only, KPTS[2]) == (0, 0, 0)
