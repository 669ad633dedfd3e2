"""FaceAPMetric (all-faces AP at IoU 0.5) against hand-computed values."""
import math

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.utils import register_all_modules
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData

from projects.retinaface.evaluation.metrics import FaceAPMetric
from projects.retinaface.evaluation.metrics.face_ap_metric import match_faces

# Image A (network input scaled by 2: scale_factor (2, 2); numbers below in original pixels)
#   kept faces  g1 (0,0)-(10,10), g2 (20,0)-(30,10), g3 (40,0)-(50,10)
#   ignored     i1 (60,0)-(70,10)
#   predictions (score): p1 .9 on g1 (exact) -> TP
#                        p2 .8 on g1 again (IoU 0.9) -> FP (g1 matched before)
#                        p3 .7 on i1 -> ignored (neither TP nor FP)
#                        p4 .6 on g2, shifted by 4 px: IoU 60/140 = 0.43 < 0.5 -> FP
#                        p5 .5 on g3, shifted by 2 px: IoU 80/120 = 0.67 -> TP
# Image B (scale_factor (1, 1)): kept face g4 (0,0)-(20,20), no prediction; and a false
#   positive p6 .95 far away -> FP (counted: unlike the official WIDER quirk B has faces anyway)
# Image C: no face at all, prediction p7 .3 -> FP (counted).
#
# Ranked counted predictions: p6 (FP) .95, p1 (TP) .9, p2 (FP) .8, p4 (FP) .6, p5 (TP) .5,
# p7 (FP) .3; 4 kept faces.
#   cum TP  0, 1, 1, 1, 2, 2 ; precision 0, 1/2, 1/3, 1/4, 2/5, 2/6 ; recall 0, .25, .25,
#   .25, .5, .5
# VOC all-point AP: interpolated precision at recall .25 = max(1/2, 1/3, 1/4, 2/5, 2/6) = 1/2,
#   at recall .5 = 2/5. AP = .25 * 1/2 + .25 * 2/5 = 0.125 + 0.1 = 0.225. Max recall 0.5.
EXPECTED_AP = 0.25 * 0.5 + 0.25 * 0.4


def _sample(gt, ignored, pred, scores, scale, img_id):
    s = DetDataSample(metainfo=dict(img_id=img_id, img_path=f'{img_id}.jpg',
                                    ori_shape=(100, 100), scale_factor=(scale, scale)))
    gt = np.asarray(gt, dtype=np.float32).reshape(-1, 4) * scale
    s.gt_instances = InstanceData(
        bboxes=HorizontalBoxes(torch.from_numpy(gt)),
        labels=torch.zeros(len(gt), dtype=torch.long))
    ign = np.asarray(ignored, dtype=np.float32).reshape(-1, 4) * scale
    s.ignored_instances = InstanceData(
        bboxes=HorizontalBoxes(torch.from_numpy(ign)),
        labels=torch.zeros(len(ign), dtype=torch.long))
    pred = np.asarray(pred, dtype=np.float32).reshape(-1, 4)
    s.pred_instances = InstanceData(
        bboxes=torch.from_numpy(pred),
        scores=torch.tensor(scores, dtype=torch.float32),
        labels=torch.zeros(len(pred), dtype=torch.long))
    return s


def _samples():
    a = _sample(
        gt=[[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]],
        ignored=[[60, 0, 70, 10]],
        pred=[[0, 0, 10, 10], [0, 0, 10, 9], [60, 0, 70, 10], [24, 0, 34, 10],
              [42, 0, 52, 10]],
        scores=[.9, .8, .7, .6, .5], scale=2., img_id='e/a')
    b = _sample(gt=[[0, 0, 20, 20]], ignored=[], pred=[[50, 50, 60, 60]], scores=[.95],
                scale=1., img_id='e/b')
    c = _sample(gt=[], ignored=[], pred=[[5, 5, 15, 15]], scores=[.3], scale=1.,
                img_id='e/c')
    return [a, b, c]


def _evaluate(cfg, samples):
    register_all_modules(init_default_scope=True)
    ev = Evaluator(cfg)
    ev.process([s.to_dict() for s in samples])
    return ev.evaluate(len(samples))


def test_match_faces_labels():
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], dtype=np.float64)
    ign = np.array([[60, 0, 70, 10]], dtype=np.float64)
    pred = np.array([[0, 0, 10, 9], [0, 0, 10, 10], [60, 0, 70, 10], [24, 0, 34, 10],
                     [42, 0, 52, 10]], dtype=np.float64)
    # the exact box has the higher score but comes second: labels stay in input order
    labels = match_faces(gt, ign, pred, np.array([.8, .9, .7, .6, .5]), 0.5)
    assert labels.tolist() == [0, 1, -1, 0, 1]
    # with a lower IoU threshold the shifted box on g2 (IoU 0.43) becomes a TP
    labels = match_faces(gt, ign, pred, np.array([.8, .9, .7, .6, .5]), 0.4)
    assert labels.tolist() == [0, 1, -1, 1, 1]
    assert match_faces(gt[:0], ign[:0], pred, np.ones(5), 0.5).tolist() == [0] * 5


def test_face_ap_hand_computed():
    res = _evaluate(dict(type='FaceAPMetric', iou_thr=0.5), _samples())
    assert res['face_ap/ap'] == pytest.approx(EXPECTED_AP, abs=1e-12)
    assert res['face_ap/max_recall'] == pytest.approx(0.5)
    assert res['face_ap/num_faces'] == 4
    assert res['face_ap/num_ignored'] == 1
    assert res['face_ap/num_predictions'] == 6  # p3 is ignored


def test_face_ap_perfect_and_scale_factor():
    # perfect predictions in original pixels, gt given at 2x network-input scale: AP 1
    s = _sample(gt=[[0, 0, 10, 10], [20, 0, 30, 10]], ignored=[],
                pred=[[0, 0, 10, 10], [20, 0, 30, 10]], scores=[.9, .8], scale=2.,
                img_id='e/a')
    res = _evaluate(dict(type='FaceAPMetric'), [s])
    assert res['face_ap/ap'] == pytest.approx(1.0)
    # predictions equal to the gt in *network-input* pixels are wrong in original pixels
    # (IoU 0.25 and 0): AP 0 shows the gt is divided by scale_factor before matching
    s2 = _sample(gt=[[0, 0, 10, 10], [20, 0, 30, 10]], ignored=[],
                 pred=[[0, 0, 20, 20], [40, 0, 60, 20]], scores=[.9, .8], scale=2.,
                 img_id='e/b')
    res2 = _evaluate(dict(type='FaceAPMetric'), [s2])
    assert res2['face_ap/ap'] == pytest.approx(0.0)


def test_face_ap_score_thr_and_empty():
    # score_thr drops p7 (.3) and p5 (.5): ranked p6 FP, p1 TP, p2 FP, p4 FP;
    # AP = .25 * 1/2
    res = _evaluate(dict(type='FaceAPMetric', score_thr=0.55), _samples())
    assert res['face_ap/ap'] == pytest.approx(0.125)
    metric = FaceAPMetric()
    out = metric.compute_metrics([])
    assert math.isnan(out['ap']) and out['num_faces'] == 0
    with pytest.raises(ValueError, match='iou_thr'):
        FaceAPMetric(iou_thr=0)
