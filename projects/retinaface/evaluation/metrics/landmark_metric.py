"""Normalised mean error (NME) of the five facial landmarks of detected faces."""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from .wider_face_metric import to_numpy


def sample_scale(sample: dict) -> Tuple[float, float]:
    """``(sx, sy)`` of a data sample's ``scale_factor`` (1, 1 when absent): dividing its
    ``gt_instances`` coordinates (network input) by them gives original-image pixels."""
    sf = sample.get('scale_factor')
    if sf is None:
        return 1., 1.
    sf = np.asarray(sf, dtype=np.float64).reshape(-1)
    return (float(sf[0]), float(sf[1])) if sf.size >= 2 else (float(sf[0]), float(sf[0]))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``(len(a), len(b))`` of ``x1 y1 x2 y2`` boxes (mmdet convention, no +1)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide='ignore', invalid='ignore'):
        iou = np.where(union > 0, inter / union, 0.)
    return iou


@METRICS.register_module()
class LandmarkNMEMetric(BaseMetric):
    """Normalised mean error of the five landmarks, and the failure rate.

    For every ground-truth face with a landmark annotation (``gt_instances.keypoints``
    ``(N, 5, 2)`` with ``keypoints_valid`` ``(N, 5)``, in network-input coordinates, brought
    back to original pixels by dividing by ``scale_factor``), the prediction with the highest
    IoU is taken (predictions with ``score >= score_thr``; IoU without the +1 convention). When
    that IoU is ``>= iou_thr`` the face's error is::

        NME = mean over its annotated points of ||pred_point - gt_point||_2 / norm

    with ``norm = sqrt(w * h)`` of the ground-truth box (``norm='sqrt_area'``, default) or its
    diagonal ``sqrt(w^2 + h^2)`` (``norm='diagonal'``), in original pixels. A prediction may be
    the best match of more than one face.

    Reported (with the ``landmark/`` prefix): ``nme`` (mean over matched faces),
    ``failure_rate`` (share of matched faces with NME > ``failure_thr``, default 0.1),
    ``num_faces`` (matched faces evaluated) and ``num_unmatched`` (annotated faces without a
    prediction at ``iou_thr``). Unmatched faces are reported separately and do **not** enter
    ``nme`` or ``failure_rate`` unless ``unmatched_as_failure=True``, in which case they count
    as failures in ``failure_rate`` (its denominator then includes them); ``nme`` is never
    affected.

    Args:
        iou_thr (float): IoU needed to match a face. Defaults to 0.5.
        score_thr (float): predictions below this score are not matched. Defaults to 0.
        failure_thr (float): NME above which a face is a failure. Defaults to 0.1.
        norm (str): ``'sqrt_area'`` or ``'diagonal'`` of the ground-truth box.
        unmatched_as_failure (bool): count unmatched annotated faces as failures.
        collect_device (str): device for collecting results. Defaults to 'cpu'.
        prefix (str, optional): metric name prefix. Defaults to 'landmark'.
    """
    default_prefix: Optional[str] = 'landmark'

    def __init__(self,
                 iou_thr: float = 0.5,
                 score_thr: float = 0.,
                 failure_thr: float = 0.1,
                 norm: str = 'sqrt_area',
                 unmatched_as_failure: bool = False,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if norm not in ('sqrt_area', 'diagonal'):
            raise ValueError(f"norm must be 'sqrt_area' or 'diagonal', got {norm!r}")
        if not 0 < iou_thr <= 1:
            raise ValueError(f'iou_thr must be in (0, 1], got {iou_thr}')
        self.iou_thr = iou_thr
        self.score_thr = score_thr
        self.failure_thr = failure_thr
        self.norm = norm
        self.unmatched_as_failure = unmatched_as_failure

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep the NME of each matched annotated face and the unmatched count per image."""
        for sample in data_samples:
            gt = sample.get('gt_instances', {})
            if 'keypoints' not in gt:
                self.results.append((np.zeros(0), 0))
                continue
            gt_boxes = to_numpy(gt['bboxes']).astype(np.float64).reshape(-1, 4)
            gt_kpts = to_numpy(gt['keypoints']).astype(np.float64).reshape(-1, 5, 2)
            if 'keypoints_valid' in gt:
                valid = to_numpy(gt['keypoints_valid']).reshape(-1, 5) > 0
            else:
                valid = np.ones(gt_kpts.shape[:2], dtype=bool)
            sw, sh = sample_scale(sample)
            gt_boxes = gt_boxes / np.array([sw, sh, sw, sh])
            gt_kpts = gt_kpts / np.array([sw, sh])
            annotated = valid.any(axis=1)
            gt_boxes, gt_kpts, valid = gt_boxes[annotated], gt_kpts[annotated], valid[annotated]
            if gt_boxes.shape[0] == 0:
                self.results.append((np.zeros(0), 0))
                continue
            pred = sample.get('pred_instances', {})
            if 'keypoints' not in pred:
                raise KeyError('LandmarkNMEMetric needs pred_instances.keypoints (N, 5, 2)')
            p_boxes = to_numpy(pred['bboxes']).astype(np.float64).reshape(-1, 4)
            p_kpts = to_numpy(pred['keypoints']).astype(np.float64).reshape(-1, 5, 2)
            if 'scores' in pred and self.score_thr > 0:
                keep = to_numpy(pred['scores']).reshape(-1) >= self.score_thr
                p_boxes, p_kpts = p_boxes[keep], p_kpts[keep]
            if p_boxes.shape[0] == 0:
                self.results.append((np.zeros(0), gt_boxes.shape[0]))
                continue
            iou = box_iou(gt_boxes, p_boxes)
            best = iou.argmax(axis=1)
            matched = iou[np.arange(len(best)), best] >= self.iou_thr
            err = np.linalg.norm(p_kpts[best] - gt_kpts, axis=-1)  # (G, 5)
            w = gt_boxes[:, 2] - gt_boxes[:, 0]
            h = gt_boxes[:, 3] - gt_boxes[:, 1]
            if self.norm == 'sqrt_area':
                scale = np.sqrt(np.clip(w * h, 0, None))
            else:
                scale = np.sqrt(w * w + h * h)
            with np.errstate(divide='ignore', invalid='ignore'):
                nme = (err * valid).sum(1) / valid.sum(1) / scale
            self.results.append((nme[matched], int((~matched).sum())))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        nmes = np.concatenate([r[0] for r in results]) if results else np.zeros(0)
        unmatched = int(sum(r[1] for r in results))
        n = int(nmes.size)
        fails = int((nmes > self.failure_thr).sum())
        if self.unmatched_as_failure:
            denom = n + unmatched
            failure_rate = (fails + unmatched) / denom if denom else float('nan')
        else:
            failure_rate = fails / n if n else float('nan')
        nme = float(nmes.mean()) if n else float('nan')
        if n == 0:
            print_log('LandmarkNMEMetric: no annotated face was matched (NME is NaN)',
                      logger='current', level=30)
        print_log(f'LandmarkNMEMetric: NME {nme:.4f} ({self.norm}), failure rate '
                  f'{failure_rate:.4f} at NME > {self.failure_thr} over {n} matched faces; '
                  f'{unmatched} annotated faces unmatched at IoU {self.iou_thr} '
                  f'({"counted" if self.unmatched_as_failure else "not counted"} as failures)',
                  logger='current')
        return dict(nme=nme, failure_rate=float(failure_rate), num_faces=n,
                    num_unmatched=unmatched)
