"""All-faces average precision at one IoU threshold (e.g. on a held-out slice of train images)."""
from typing import Dict, Optional, Sequence

import numpy as np
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from ..functional import voc_ap
from .landmark_metric import box_iou, sample_scale
from .wider_face_metric import to_numpy


def _boxes(instances, key: str = 'bboxes') -> np.ndarray:
    if instances is None or key not in instances:
        return np.zeros((0, 4), dtype=np.float64)
    return to_numpy(instances[key]).astype(np.float64).reshape(-1, 4)


def match_faces(gt_boxes: np.ndarray,
                ignored_boxes: np.ndarray,
                pred_boxes: np.ndarray,
                pred_scores: np.ndarray,
                iou_thr: float = 0.5) -> np.ndarray:
    """Label the predictions of one image as true positive (1), false positive (0) or ignored.

    Predictions are visited by descending score (stable). Each one is compared with every face
    of the image, kept (``gt_boxes``) and ignored (``ignored_boxes``), and takes the face of
    highest IoU (mmdet convention, no +1; the first face wins a tie, kept faces come first).
    With ``IoU >= iou_thr``: an ignored face makes the prediction ignored (neither TP nor FP);
    a kept face not matched before makes it a TP (the face is then matched); a kept face matched
    before makes it a FP. Below the threshold it is a FP. This is the matching of mmdet's
    ``eval_map`` / VOC with ignored ground truth.

    Returns:
        np.ndarray: ``(num_pred,)`` int8 in the input order: 1 TP, 0 FP, -1 ignored.
    """
    num_pred = pred_boxes.shape[0]
    labels = np.zeros(num_pred, dtype=np.int8)
    all_gt = np.concatenate([gt_boxes, ignored_boxes], axis=0)
    if num_pred == 0 or all_gt.shape[0] == 0:
        return labels
    num_kept = gt_boxes.shape[0]
    iou = box_iou(pred_boxes, all_gt)  # (num_pred, num_gt)
    best = iou.argmax(axis=1)
    best_iou = iou[np.arange(num_pred), best]
    matched = np.zeros(num_kept, dtype=bool)
    for i in np.argsort(-pred_scores, kind='stable'):
        if best_iou[i] < iou_thr:
            continue  # FP
        g = best[i]
        if g >= num_kept:
            labels[i] = -1
        elif not matched[g]:
            matched[g] = True
            labels[i] = 1
    return labels


@METRICS.register_module()
class FaceAPMetric(BaseMetric):
    """Average precision over all faces (one class, no easy/medium/hard split) at one IoU.

    Used for the held-out slice of the train images, where there is no official WIDER
    evaluation ground truth. The ground truth is read from each data sample:
    ``gt_instances.bboxes`` (the kept faces) and ``ignored_instances.bboxes`` (faces with an
    ignore flag), both in network-input pixels and brought back to original pixels by dividing
    by ``scale_factor``; predictions ``pred_instances.bboxes`` / ``scores`` are in original
    pixels (``rescale=True``).

    Matching per image (:func:`match_faces`): by descending score, each prediction takes the face
    of highest IoU (no +1 pixel convention); a face matched for the first time makes a true
    positive, a face matched before a false positive, an ignored face makes the prediction
    ignored (neither TP nor FP), and ``IoU < iou_thr`` a false positive. Unlike the official
    WIDER evaluation, false positives in images without faces count. Predictions of all images
    are then ranked by score (stable sort, images in processing order) into one precision /
    recall curve, recall = TP / number of kept faces, and AP is the VOC all-point AP
    (:func:`projects.retinaface.evaluation.functional.voc_ap`).

    Reported (with the ``face_ap/`` prefix): ``ap``, ``max_recall`` (recall of all predictions
    above ``score_thr``), ``num_faces`` (kept faces), ``num_ignored`` (ignored faces) and
    ``num_predictions`` (predictions counted, ignored ones excluded).

    Args:
        iou_thr (float): IoU for a true positive. Defaults to 0.5.
        score_thr (float): predictions below this score are dropped first. Defaults to 0.
        collect_device (str): device for collecting results. Defaults to 'cpu'.
        prefix (str, optional): metric name prefix. Defaults to 'face_ap'.
    """
    default_prefix: Optional[str] = 'face_ap'

    def __init__(self,
                 iou_thr: float = 0.5,
                 score_thr: float = 0.,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not 0 < iou_thr <= 1:
            raise ValueError(f'iou_thr must be in (0, 1], got {iou_thr}')
        self.iou_thr = float(iou_thr)
        self.score_thr = float(score_thr)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep ``(scores, labels, num_kept_faces, num_ignored_faces)`` of every image."""
        for sample in data_samples:
            if 'gt_instances' not in sample:
                raise KeyError('FaceAPMetric needs gt_instances in the data samples (load the '
                               'annotations in the test pipeline: LoadFaceAnnotations)')
            pred = sample.get('pred_instances')
            if pred is None:
                raise KeyError('FaceAPMetric: data sample has no pred_instances')
            sw, sh = sample_scale(sample)
            scale = np.array([sw, sh, sw, sh])
            gt_boxes = _boxes(sample['gt_instances']) / scale
            ignored = _boxes(sample.get('ignored_instances')) / scale
            p_boxes = _boxes(pred)
            p_scores = to_numpy(pred['scores']).astype(np.float64).reshape(-1)
            if p_boxes.shape[0] != p_scores.shape[0]:
                raise ValueError(f'{p_boxes.shape[0]} predicted boxes but '
                                 f'{p_scores.shape[0]} scores')
            keep = p_scores >= self.score_thr
            p_boxes, p_scores = p_boxes[keep], p_scores[keep]
            labels = match_faces(gt_boxes, ignored, p_boxes, p_scores, self.iou_thr)
            self.results.append((p_scores, labels, gt_boxes.shape[0], ignored.shape[0]))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        num_faces = int(sum(r[2] for r in results))
        num_ignored = int(sum(r[3] for r in results))
        if results:
            scores = np.concatenate([r[0] for r in results])
            labels = np.concatenate([r[1] for r in results])
        else:
            scores, labels = np.zeros(0), np.zeros(0, dtype=np.int8)
        counted = labels >= 0
        scores, tp = scores[counted], (labels[counted] == 1).astype(np.float64)
        order = np.argsort(-scores, kind='stable')
        cum_tp = np.cumsum(tp[order])
        cum_det = np.arange(1, tp.size + 1, dtype=np.float64)
        if num_faces == 0:
            ap = max_recall = float('nan')
            print_log('FaceAPMetric: no ground-truth face (AP is NaN)', logger='current',
                      level=30)
        else:
            recall = cum_tp / num_faces
            precision = cum_tp / np.maximum(cum_det, 1)
            ap = voc_ap(recall, precision) if tp.size else 0.
            max_recall = float(recall[-1]) if tp.size else 0.
        print_log(f'FaceAPMetric: AP@{self.iou_thr} {ap:.4f}, max recall {max_recall:.4f} over '
                  f'{num_faces} faces ({num_ignored} ignored) in {len(results)} images, '
                  f'{int(tp.size)} predictions', logger='current')
        return dict(ap=float(ap), max_recall=float(max_recall), num_faces=num_faces,
                    num_ignored=num_ignored, num_predictions=int(tp.size))
