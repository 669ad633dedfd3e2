"""LandmarkNMEMetric against hand-computed NMEs."""
import math

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.utils import register_all_modules
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData

from projects.retinaface.evaluation.metrics import LandmarkNMEMetric

# Original-pixel ground truth (the network input is scaled by 2: scale_factor (2, 2)).
#   face 1: box (10,10)-(50,50): sqrt(w*h) = 40, diagonal 40*sqrt(2)
#   face 2: box (100,100)-(120,140): sqrt(20*40) = sqrt(800), diagonal sqrt(2000)
#   face 3: box (200,10)-(240,50), no landmark annotation (all invalid): not evaluated
#   face 4: box (300,300)-(340,340) with landmarks but no prediction: unmatched
GT_BOXES = np.array([[10, 10, 50, 50], [100, 100, 120, 140], [200, 10, 240, 50],
                     [300, 300, 340, 340]], dtype=np.float64)
K1 = np.array([[20, 20], [40, 20], [30, 30], [22, 40], [38, 40]], dtype=np.float64)
K2 = np.array([[105, 110], [115, 110], [110, 120], [106, 130], [114, 130]], dtype=np.float64)
GT_KPTS = np.stack([K1, K2, np.full((5, 2), -1.), K1 + 290])
GT_VALID = np.array([[1] * 5, [1] * 5, [0] * 5, [1] * 5], dtype=np.float32)

# Predictions (original pixels):
#   a: on face 1, IoU 39*40 / (39*41 + 40*40 - 39*40) = .952; point errors
#      (3,4)->5, 0, 0, (0,2)->2, (1,0)->1: mean 8/5 = 1.6, NME 1.6 / 40 = 0.04
#   b: a higher-score box on face 1 with lower IoU (.5625); its landmarks are far off. The
#      highest-IoU prediction (a) must be the one used.
#   c: on face 2 exactly, every point off by (6, 8) -> 10: NME 10 / sqrt(800) = 0.35355
PRED_BOXES = np.array([[11, 10, 50, 51], [10, 10, 50, 32.5], [100, 100, 120, 140]])
PRED_KPTS = np.stack([K1 + np.array([[3, 4], [0, 0], [0, 0], [0, 2], [1, 0]]),
                      K1 + 50, K2 + np.array([6, 8])])
PRED_SCORES = np.array([.8, .95, .7])


def _sample(gt_as_boxes=False):
    s = DetDataSample(metainfo=dict(img_id='e/x', img_path='e/x.jpg', ori_shape=(400, 400),
                                    scale_factor=(2., 2.)))
    gt = InstanceData()
    b = torch.tensor(GT_BOXES * 2, dtype=torch.float32)
    gt.bboxes = HorizontalBoxes(b) if gt_as_boxes else b
    gt.labels = torch.zeros(4, dtype=torch.long)
    gt.keypoints = torch.tensor(GT_KPTS * 2, dtype=torch.float32)
    gt.keypoints_valid = torch.tensor(GT_VALID)
    s.gt_instances = gt
    s.pred_instances = InstanceData(
        bboxes=torch.tensor(PRED_BOXES, dtype=torch.float32),
        scores=torch.tensor(PRED_SCORES, dtype=torch.float32),
        labels=torch.zeros(3, dtype=torch.long),
        keypoints=torch.tensor(PRED_KPTS, dtype=torch.float32))
    return s


def _run(cfg, samples):
    register_all_modules(init_default_scope=True)
    ev = Evaluator(cfg)
    ev.process(samples)
    return ev.evaluate(len(samples))


@pytest.mark.parametrize('gt_as_boxes', [False, True])
def test_nme_hand_computed(gt_as_boxes):
    res = _run(dict(type='LandmarkNMEMetric'), [_sample(gt_as_boxes)])
    nme1, nme2 = 0.04, 10 / math.sqrt(800)
    assert res['landmark/nme'] == pytest.approx((nme1 + nme2) / 2, rel=1e-6)
    assert res['landmark/failure_rate'] == pytest.approx(0.5)  # face 2 > 0.1
    assert res['landmark/num_faces'] == 2
    assert res['landmark/num_unmatched'] == 1


def test_nme_options():
    # unmatched face 4 counted as a failure: (1 + 1) / 3; NME itself unchanged
    res = _run(dict(type='LandmarkNMEMetric', unmatched_as_failure=True), [_sample()])
    assert res['landmark/failure_rate'] == pytest.approx(2 / 3)
    assert res['landmark/nme'] == pytest.approx((0.04 + 10 / math.sqrt(800)) / 2, rel=1e-6)
    # box diagonal normalisation: 1.6 / (40 sqrt 2) and 10 / sqrt(2000)
    res = _run(dict(type='LandmarkNMEMetric', norm='diagonal'), [_sample()])
    assert res['landmark/nme'] == pytest.approx(
        (1.6 / (40 * math.sqrt(2)) + 10 / math.sqrt(2000)) / 2, rel=1e-6)
    # IoU 0.96: face 1 (best IoU .952) becomes unmatched, face 2 (IoU 1) stays
    res = _run(dict(type='LandmarkNMEMetric', iou_thr=0.96), [_sample()])
    assert res['landmark/num_faces'] == 1 and res['landmark/num_unmatched'] == 2
    # score_thr above a's and c's scores leaves only b (IoU .5625 with face 1): NME of b
    res = _run(dict(type='LandmarkNMEMetric', score_thr=0.9), [_sample()])
    assert res['landmark/num_faces'] == 1
    assert res['landmark/nme'] == pytest.approx(math.sqrt(2 * 50**2) / 40, rel=1e-6)
    with pytest.raises(ValueError, match='norm'):
        LandmarkNMEMetric(norm='eyes')


def test_images_without_landmarks_give_nan():
    s = _sample()
    s.gt_instances.keypoints_valid = torch.zeros(4, 5)
    res = _run(dict(type='LandmarkNMEMetric'), [s])
    assert res['landmark/num_faces'] == 0 and np.isnan(res['landmark/nme'])
