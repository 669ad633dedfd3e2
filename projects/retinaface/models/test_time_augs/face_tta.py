"""Test-time augmentation for face detection: flips and scales merged by box voting.

RetinaFace (Deng et al., 2020) tests with horizontal flip and the shorter side at 500, 800,
1100, 1400 and 1700 pixels, and merges the detections of all views by box voting at IoU 0.4.
:class:`FaceTTAModel` does that and keeps the five landmarks.

Config (``configs/_base_/tta/face_tta.py`` holds the full pipeline)::

    tta_model = dict(type='FaceTTAModel',
                     tta_cfg=dict(merge='vote', iou_thr=0.4, max_per_img=750))
    tta_pipeline = [
        dict(type='LoadImageFromFile', backend_args=None),
        dict(type='LoadFaceAnnotations'),
        dict(type='TestTimeAug', transforms=[
            [dict(type='Resize', scale=(s, 100000), keep_ratio=True)   # short side s
             for s in (500, 800, 1100, 1400, 1700)],
            [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
            [dict(type='PackFaceInputs',
                  meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                             'scale_factor', 'flip', 'flip_direction'))]])]

The annotations are loaded before ``TestTimeAug`` so that every view's ``gt_instances`` follow
its own resize / flip, and the merged sample is the first *non-flipped* view (its
``gt_instances`` and ``scale_factor`` agree, as :class:`LandmarkNMEMetric` expects).
"""
import logging
from typing import List, Optional

import numpy as np
import torch
from mmcv.ops import batched_nms
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_flip
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel
from mmengine.structures import InstanceData

# left eye, right eye, nose, left mouth corner, right mouth corner -> swap left / right
FLIP_ORDER = [1, 0, 2, 4, 3]


def flip_keypoints(keypoints: torch.Tensor, img_width: float) -> torch.Tensor:
    """Undo a horizontal flip of ``(N, 5, 2)`` landmarks: mirror x (``W - x``, as mmdet
    flips boxes) and swap the left / right points (order ``[1, 0, 2, 4, 3]``)."""
    flipped = keypoints.clone()
    flipped[..., 0] = img_width - keypoints[..., 0]
    return flipped[:, FLIP_ORDER]


def _iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``x1 y1 x2 y2`` box with many (no +1, mmdet convention)."""
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0,
                                                                  None)
    union = area + areas - inter
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(union > 0, inter / union, 0.)


def box_vote(boxes: np.ndarray,
             scores: np.ndarray,
             labels: np.ndarray,
             keypoints: Optional[np.ndarray] = None,
             keypoints_valid: Optional[np.ndarray] = None,
             iou_thr: float = 0.4,
             max_num: int = -1,
             min_votes: int = 1):
    """Greedy box voting.

    Boxes are visited by descending score (stable); the highest remaining box takes every
    remaining box of its label with ``IoU >= iou_thr`` (itself included) as its cluster. The
    cluster gives one detection: the score-weighted mean box, the highest score (the kept
    box's), its label, and per landmark point the score-weighted mean over the members whose
    point is valid (the kept box's own point when none is). Clusters with fewer than
    ``min_votes`` members are dropped (the reference implementation effectively drops
    singletons; default 1 keeps them).

    Returns:
        tuple: ``boxes (K, 4)``, ``scores (K,)``, ``labels (K,)``, ``keypoints (K, 5, 2)`` or
        None, and ``member_index`` (list of arrays of input indices per output detection).
    """
    n = boxes.shape[0]
    order = np.argsort(-scores, kind='stable')
    boxes, scores, labels = boxes[order], scores[order], labels[order]
    if keypoints is not None:
        keypoints = keypoints[order]
        if keypoints_valid is None:
            keypoints_valid = np.isfinite(keypoints).all(-1)
        else:
            keypoints_valid = keypoints_valid[order] & np.isfinite(keypoints).all(-1)
    remaining = np.ones(n, dtype=bool)
    out_b, out_s, out_l, out_k, members_out = [], [], [], [], []
    i = 0
    while i < n and (max_num <= 0 or len(out_b) < max_num):
        if not remaining[i]:
            i += 1
            continue
        members = remaining & (labels == labels[i]) & (_iou_one_to_many(boxes[i], boxes) >=
                                                       iou_thr)
        members[i] = True
        remaining &= ~members
        idx = np.nonzero(members)[0]
        if idx.size < min_votes:
            i += 1
            continue
        w = scores[idx]
        out_b.append((boxes[idx] * w[:, None]).sum(0) / w.sum())
        out_s.append(scores[i])
        out_l.append(labels[i])
        if keypoints is not None:
            kv = keypoints_valid[idx].astype(np.float64) * w[:, None]  # (M, 5)
            kp = np.where(keypoints_valid[idx][..., None], keypoints[idx], 0.)
            den = kv.sum(0)
            with np.errstate(divide='ignore', invalid='ignore'):
                mean = (kp * kv[..., None]).sum(0) / den[:, None]
            out_k.append(np.where((den > 0)[:, None], mean, keypoints[i]))
        members_out.append(order[idx])
        i += 1
    k = len(out_b)
    res_b = np.array(out_b, dtype=np.float64).reshape(k, 4)
    res_s = np.array(out_s, dtype=np.float64).reshape(k)
    res_l = np.array(out_l, dtype=np.int64).reshape(k)
    res_k = np.array(out_k, dtype=np.float64).reshape(k, 5, 2) if keypoints is not None \
        else None
    return res_b, res_s, res_l, res_k, members_out


@MODELS.register_module()
class FaceTTAModel(BaseTTAModel):
    """Merge the detections of flipped / rescaled views of an image, keeping landmarks.

    The wrapped detector predicts with ``rescale=True``: boxes and ``keypoints`` are in
    original-image pixels, but still mirrored for flipped views. Those are un-flipped with the
    view's ``ori_shape`` width (boxes with mmdet's ``bbox_flip``, landmarks mirrored and
    re-ordered left <-> right), then all views are merged.

    Args:
        tta_cfg (dict): ``merge``: ``'vote'`` (default, the paper's box voting) or ``'nms'``;
            ``iou_thr`` (0.4): voting / NMS IoU; ``max_per_img`` (750): detections kept;
            ``min_votes`` (1, voting only): smallest cluster kept; ``score_thr`` (0.): drop
            merged detections below it.
        module (dict | nn.Module): the detector. Other args as mmengine's ``BaseTTAModel``.
    """

    def __init__(self, tta_cfg: Optional[dict] = None, **kwargs):
        super().__init__(**kwargs)
        cfg = dict(merge='vote', iou_thr=0.4, max_per_img=750, min_votes=1, score_thr=0.)
        unknown = set(tta_cfg or {}) - set(cfg)
        if unknown:
            raise ValueError(f'FaceTTAModel: unknown tta_cfg keys {sorted(unknown)}; '
                             f'allowed {sorted(cfg)}')
        cfg.update(tta_cfg or {})
        if cfg['merge'] not in ('vote', 'nms'):
            raise ValueError(f"tta_cfg.merge must be 'vote' or 'nms', got {cfg['merge']!r}")
        if not 0 < cfg['iou_thr'] <= 1:
            raise ValueError(f"tta_cfg.iou_thr must be in (0, 1], got {cfg['iou_thr']}")
        self.tta_cfg = cfg
        self._warned_vertices = False

    def merge_preds(self, data_samples_list: List[list]) -> list:
        """Merge the views of each image (outer list: images, inner: views)."""
        return [self._merge_single_sample(samples) for samples in data_samples_list]

    @staticmethod
    def _unflip(pred: InstanceData, meta: dict):
        bboxes = pred.bboxes
        if hasattr(bboxes, 'tensor'):
            bboxes = bboxes.tensor
        kpts = pred.get('keypoints', None)
        if meta.get('flip', False):
            direction = meta.get('flip_direction', 'horizontal')
            if direction != 'horizontal':
                raise ValueError(f'FaceTTAModel only undoes horizontal flips, got {direction!r}')
            ori_shape = meta['ori_shape']
            bboxes = bbox_flip(bboxes, ori_shape, 'horizontal')
            if kpts is not None:
                kpts = flip_keypoints(kpts, ori_shape[1])
                if pred.get('keypoints_valid', None) is not None:
                    pred = pred.clone()
                    pred.keypoints_valid = pred.keypoints_valid[:, FLIP_ORDER]
        return bboxes, kpts, pred.get('keypoints_valid', None)

    def _merge_single_sample(self, data_samples: list):
        base = next((s for s in data_samples if not s.metainfo.get('flip', False)),
                    data_samples[0])
        all_b, all_s, all_l, all_k, all_kv = [], [], [], [], []
        has_kpts = [s.pred_instances.get('keypoints', None) is not None for s in data_samples]
        use_kpts = any(has_kpts)
        for sample in data_samples:
            pred = sample.pred_instances
            if pred.get('vertices', None) is not None and not self._warned_vertices:
                print_log('FaceTTAModel does not merge dense vertices; they are dropped',
                          logger='current', level=logging.WARNING)
                self._warned_vertices = True
            bboxes, kpts, kvalid = self._unflip(pred, sample.metainfo)
            n = bboxes.shape[0]
            all_b.append(bboxes.detach().float().cpu())
            all_s.append(pred.scores.detach().float().cpu())
            labels = pred.get('labels', None)
            all_l.append(labels.detach().cpu().long() if labels is not None else
                         torch.zeros(n, dtype=torch.long))
            if use_kpts:
                if kpts is None:
                    kpts = torch.full((n, 5, 2), float('nan'))
                    kvalid = torch.zeros((n, 5), dtype=torch.bool)
                elif kvalid is None:
                    kvalid = torch.ones((n, 5), dtype=torch.bool)
                all_k.append(kpts.detach().float().cpu().reshape(n, 5, 2))
                all_kv.append(kvalid.detach().cpu().reshape(n, 5) > 0)
        device = data_samples[0].pred_instances.scores.device
        bboxes = torch.cat(all_b)
        scores = torch.cat(all_s)
        labels = torch.cat(all_l)
        kpts = torch.cat(all_k) if use_kpts else None
        kvalid = torch.cat(all_kv) if use_kpts else None
        cfg = self.tta_cfg
        if bboxes.shape[0] == 0:
            res_b, res_s, res_l = bboxes, scores, labels
            res_k = kpts
        elif cfg['merge'] == 'nms':
            _, keep = batched_nms(bboxes, scores, labels,
                                  dict(type='nms', iou_threshold=cfg['iou_thr']))
            if cfg['max_per_img'] > 0:
                keep = keep[:cfg['max_per_img']]
            res_b, res_s, res_l = bboxes[keep], scores[keep], labels[keep]
            res_k = kpts[keep] if use_kpts else None
        else:
            b, s, lab, k, _ = box_vote(
                bboxes.double().numpy(), scores.double().numpy(), labels.numpy(),
                kpts.double().numpy() if use_kpts else None,
                kvalid.numpy() if use_kpts else None, iou_thr=cfg['iou_thr'],
                max_num=cfg['max_per_img'], min_votes=cfg['min_votes'])
            res_b = torch.from_numpy(b).float()
            res_s = torch.from_numpy(s).float()
            res_l = torch.from_numpy(lab)
            res_k = torch.from_numpy(k).float() if k is not None else None
        if cfg['score_thr'] > 0:
            keep = res_s >= cfg['score_thr']
            res_b, res_s, res_l = res_b[keep], res_s[keep], res_l[keep]
            res_k = res_k[keep] if res_k is not None else None
        results = InstanceData()
        results.bboxes = res_b.to(device)
        results.scores = res_s.to(device)
        results.labels = res_l.to(device)
        if res_k is not None:
            results.keypoints = res_k.reshape(-1, 5, 2).to(device)
        base.pred_instances = results
        return base
