"""The RetinaFace paper's random square crop."""
from typing import Optional, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class RandomSquareCrop(BaseTransform):
    """Crop a random square patch whose side is a random fraction of the short edge.

    As in RetinaFace (and its reference implementation): the side is ``scale * short_edge`` with
    ``scale`` uniform in ``scale_range`` (or drawn from ``scale_choices``); the square is placed
    uniformly inside the image. A crop is accepted when at least one face has its centre strictly
    inside it (non-ignored faces count when there are any) and, with ``require_whole_face``, at
    least one of those faces lies entirely inside it. The faces whose centre is inside are kept
    (boxes clipped to the crop), all others removed; ``gt_bboxes_labels`` and
    ``gt_ignore_flags`` are indexed the same way. Everything goes through the box methods
    (indexing, ``translate_``, ``clip_``), so the landmarks and vertices of a
    :class:`KeypointBoxes` move with their faces (landmarks are not clipped).

    After ``max_trials`` failures, ``fallback='pad_square'`` (default, like the reference) pads
    the whole image at the bottom/right to a square of its long side with ``pad_val``;
    ``fallback='whole'`` keeps the whole image unchanged. Images without any face get one
    random crop.

    Required keys: ``img``, ``gt_bboxes`` (optional), ``gt_bboxes_labels`` (optional),
    ``gt_ignore_flags`` (optional). Modified keys: those and ``img_shape``. Added keys:
    ``homography_matrix``, ``crop_box`` (x1, y1, x2, y2 in the input image; for the pad
    fallback the square canvas).

    Args:
        scale_range (tuple[float, float]): range of the side / short-edge ratio.
            Defaults to (0.3, 1.0).
        scale_choices (Sequence[float], optional): if given, the ratio is drawn from these
            values instead (the reference code uses (0.3, 0.45, 0.6, 0.8, 1.0)).
        max_trials (int): random crops tried before the fallback. Defaults to 250.
        require_whole_face (bool): also require a face entirely inside the crop.
            Defaults to True (reference behaviour).
        fallback (str): ``'pad_square'`` or ``'whole'``. Defaults to ``'pad_square'``.
        pad_val (float | Sequence[float]): fill value of the pad fallback (BGR).
            Defaults to (104, 117, 123).
        bbox_clip_border (bool): clip kept boxes to the crop. Defaults to True.
    """

    def __init__(self,
                 scale_range: Tuple[float, float] = (0.3, 1.0),
                 scale_choices: Optional[Sequence[float]] = None,
                 max_trials: int = 250,
                 require_whole_face: bool = True,
                 fallback: str = 'pad_square',
                 pad_val=(104, 117, 123),
                 bbox_clip_border: bool = True) -> None:
        lo, hi = float(scale_range[0]), float(scale_range[1])
        if not 0 < lo <= hi <= 1:
            raise ValueError(f'scale_range must satisfy 0 < low <= high <= 1, got {scale_range}')
        if scale_choices is not None:
            scale_choices = tuple(float(s) for s in scale_choices)
            if not scale_choices or not all(0 < s <= 1 for s in scale_choices):
                raise ValueError(f'scale_choices must be in (0, 1], got {scale_choices}')
        if fallback not in ('pad_square', 'whole'):
            raise ValueError(f"fallback must be 'pad_square' or 'whole', got {fallback!r}")
        if max_trials < 1:
            raise ValueError(f'max_trials must be >= 1, got {max_trials}')
        self.scale_range = (lo, hi)
        self.scale_choices = scale_choices
        self.max_trials = int(max_trials)
        self.require_whole_face = require_whole_face
        self.fallback = fallback
        self.pad_val = pad_val
        self.bbox_clip_border = bbox_clip_border

    def _sample_square(self, h: int, w: int) -> Tuple[int, int, int]:
        if self.scale_choices is not None:
            scale = self.scale_choices[np.random.randint(len(self.scale_choices))]
        else:
            scale = np.random.uniform(*self.scale_range)
        side = max(1, int(scale * min(h, w)))
        x0 = np.random.randint(0, w - side + 1)
        y0 = np.random.randint(0, h - side + 1)
        return x0, y0, side

    @cache_randomness
    def _choose_crop(self, results: dict) -> Optional[Tuple[int, int, int, np.ndarray]]:
        """Return (x0, y0, side, keep_mask) or ``None`` for the fallback."""
        h, w = results['img'].shape[:2]
        boxes = results.get('gt_bboxes')
        n = 0 if boxes is None else len(boxes)
        if n == 0:
            x0, y0, side = self._sample_square(h, w)
            return x0, y0, side, np.zeros((0, ), dtype=bool)
        xyxy = boxes.tensor.detach().cpu().numpy().astype(np.float64)
        centers = (xyxy[:, :2] + xyxy[:, 2:]) / 2
        ref = np.ones(n, dtype=bool)
        ignore = results.get('gt_ignore_flags')
        if ignore is not None and (~np.asarray(ignore, dtype=bool)).any():
            ref = ~np.asarray(ignore, dtype=bool)
        for _ in range(self.max_trials):
            x0, y0, side = self._sample_square(h, w)
            x1, y1 = x0 + side, y0 + side
            inside = (centers[:, 0] > x0) & (centers[:, 0] < x1) & \
                (centers[:, 1] > y0) & (centers[:, 1] < y1)
            good = inside & ref
            if not good.any():
                continue
            if self.require_whole_face:
                whole = (xyxy[:, 0] >= x0) & (xyxy[:, 1] >= y0) & \
                    (xyxy[:, 2] <= x1) & (xyxy[:, 3] <= y1)
                if not (whole & ref).any():
                    continue
            return x0, y0, side, inside
        return None

    def transform(self, results: dict) -> dict:
        """Crop (or fall back) and update image, boxes, labels and ignore flags."""
        img = results['img']
        h, w = img.shape[:2]
        choice = self._choose_crop(results)
        if choice is None:
            if self.fallback == 'whole':
                results['crop_box'] = np.array([0, 0, w, h], dtype=np.float32)
                self._record_homography(results, 0, 0)
                return results
            long_side = max(h, w)
            pad_val = np.broadcast_to(np.asarray(self.pad_val, dtype=img.dtype),
                                      (img.shape[2], ) if img.ndim == 3 else ())
            canvas = np.empty((long_side, long_side) + img.shape[2:], dtype=img.dtype)
            canvas[...] = pad_val
            canvas[:h, :w] = img
            results['img'] = canvas
            results['img_shape'] = canvas.shape[:2]
            results['crop_box'] = np.array([0, 0, long_side, long_side], dtype=np.float32)
            self._record_homography(results, 0, 0)
            return results

        x0, y0, side, keep = choice
        results['img'] = img[y0:y0 + side, x0:x0 + side, ...]
        results['img_shape'] = results['img'].shape[:2]
        results['crop_box'] = np.array([x0, y0, x0 + side, y0 + side], dtype=np.float32)
        self._record_homography(results, x0, y0)
        boxes = results.get('gt_bboxes')
        if boxes is not None and len(boxes) > 0:
            boxes = boxes[keep]
            boxes.translate_([-x0, -y0])
            if self.bbox_clip_border:
                boxes.clip_((side, side))
            results['gt_bboxes'] = boxes
            for key in ('gt_bboxes_labels', 'gt_ignore_flags'):
                if results.get(key) is not None:
                    results[key] = results[key][keep]
        return results

    @staticmethod
    def _record_homography(results: dict, x0: int, y0: int) -> None:
        mat = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], dtype=np.float32)
        if results.get('homography_matrix') is None:
            results['homography_matrix'] = mat
        else:
            results['homography_matrix'] = mat @ results['homography_matrix']

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale_range={self.scale_range}, '
                f'scale_choices={self.scale_choices}, max_trials={self.max_trials}, '
                f'require_whole_face={self.require_whole_face}, fallback={self.fallback!r}, '
                f'pad_val={self.pad_val}, bbox_clip_border={self.bbox_clip_border})')
