"""WIDER FACE evaluation, a vectorised numpy port of the official MATLAB ``eval_tools``.

The official evaluation (``wider_eval.m``, ``read_pred.m``, ``norm_score.m``, ``evaluation.m``,
``boxoverlap.m``, ``plot/VOCap.m`` of the WIDER FACE ``eval_tools``) works as follows, and this
module reproduces each step, including its quirks:

1. Ground truth comes from ``wider_face_val.mat`` (``event_list``, ``file_list``,
   ``face_bbx_list`` with ``x y w h`` rows) and, per setting, ``wider_<setting>_val.mat`` whose
   ``gt_list`` holds the **1-based** indices of the faces kept in that setting (easy / medium /
   hard). Faces outside the keep list are *ignored* faces of that setting.
2. Predictions of one image are sorted by score, descending, with a stable sort (ties keep the
   file order, like MATLAB's ``sort(..., 'descend')``).
3. Scores are min-max normalised over **all** predictions read. MATLAB starts from
   ``realmin('single')`` / ``realmax('single')``, so the extremes are ``single`` and the
   normalisation ``(s - min) / (max - min)`` runs in single precision; this is reproduced with
   ``float32`` arithmetic. When all scores are equal the result is ``NaN`` (``0 / 0``) and no
   prediction passes any threshold (AP 0), as in the official code.
4. In each image the predictions are visited in that order; each is matched to the ground-truth
   face it overlaps most (``boxoverlap``: IoU with the +1-pixel convention, ``x2 = x + w``; the
   first face wins a tie). With ``IoU >= 0.5``:

   - a face **outside** the keep list: the prediction is ignored (neither TP nor FP). The face
     can absorb any number of predictions, all ignored;
   - a kept face not matched before: true positive (recall + 1);
   - a kept face matched before: the prediction is a false positive (it still counts as a
     proposal, recall does not grow). A face is never re-assigned to its second-best prediction.

   Predictions below the IoU threshold are false positives.
   Images with no ground-truth face or with no prediction are skipped entirely, so false
   positives in images without faces are **not** counted (an official quirk).
5. For thresholds ``1 - t / 1000`` (t = 1..1000) the numbers of proposals (non-ignored
   predictions with normalised score >= threshold) and of recalled kept faces are summed over
   the images. Precision = TP / proposals, recall = TP / (number of kept faces of **all**
   evaluated images, including images without predictions).
6. AP is the VOC all-point AP of that curve (``VOCap``; NaN precision points, from thresholds
   with no proposal, are skipped by ``max`` as MATLAB does).

The official code reads every image of the ground truth and treats a missing prediction file as
an image without detections. :func:`evaluate_wider` does that with ``missing='empty'``; with
``missing='skip'`` (the default) it evaluates only the images that have a prediction entry (even
an empty one) and reports how many ground-truth images / faces were left out.

Speed: the per-prediction MATLAB loops are replaced by one IoU matrix per image, and the 1000
thresholds by a single sort of all normalised scores with cumulative counts read by
``np.searchsorted`` (the per-image prefix sums add up to global sums over predictions).
"""
import functools
import os
import os.path as osp
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

SETTINGS = ('easy', 'medium', 'hard')
GT_FILE = 'wider_face_val.mat'
SETTING_FILE = 'wider_{}_val.mat'


class WiderFaceGT:
    """Official WIDER FACE evaluation ground truth.

    Attributes:
        image_keys (list[str]): ``'event/name'`` of every image, in the official order.
        boxes (list[np.ndarray]): per image, ``(n, 4)`` float64 ``x y w h`` face boxes.
        keep (dict[str, list[np.ndarray]]): per setting, per image, ``(n,)`` bool keep masks.
        face_offsets (np.ndarray): ``(num_images + 1,)`` start of each image's faces in the
            flat face index used by :attr:`keep_flat`.
        keep_flat (dict[str, np.ndarray]): per setting, ``(total_faces,)`` bool keep masks.
        keep_counts (dict[str, np.ndarray]): per setting, number of kept faces per image.
        index (dict[str, int]): image key -> position in :attr:`image_keys`.
    """

    def __init__(self, image_keys: List[str], boxes: List[np.ndarray],
                 keep: Dict[str, List[np.ndarray]]):
        if len(image_keys) != len(boxes):
            raise ValueError('image_keys and boxes differ in length')
        self.image_keys = list(image_keys)
        self.boxes = [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in boxes]
        self.keep = {}
        for setting, masks in keep.items():
            if len(masks) != len(boxes):
                raise ValueError(f'keep list of setting {setting!r} has {len(masks)} images, '
                                 f'the ground truth has {len(boxes)}')
            self.keep[setting] = [np.asarray(m, dtype=bool).reshape(-1) for m in masks]
            for key, m, b in zip(self.image_keys, self.keep[setting], self.boxes):
                if m.shape[0] != b.shape[0]:
                    raise ValueError(f'keep mask of {key} ({setting}) has {m.shape[0]} entries '
                                     f'for {b.shape[0]} faces')
        self.index = {k: i for i, k in enumerate(self.image_keys)}
        if len(self.index) != len(self.image_keys):
            raise ValueError('duplicate image keys in the ground truth')
        counts = np.array([b.shape[0] for b in self.boxes], dtype=np.int64)
        self.face_offsets = np.concatenate([[0], np.cumsum(counts)])
        self.keep_flat = {
            s: (np.concatenate(m) if m else np.zeros(0, bool)) for s, m in self.keep.items()
        }
        self.keep_counts = {
            s: np.array([int(x.sum()) for x in m], dtype=np.int64) for s, m in self.keep.items()
        }

    @property
    def settings(self) -> List[str]:
        return list(self.keep)

    def __len__(self) -> int:
        return len(self.image_keys)

    @classmethod
    def from_arrays(cls, gt: Mapping[str, np.ndarray],
                    keep_index: Mapping[str, Mapping[str, Sequence[int]]]) -> 'WiderFaceGT':
        """Build from ``{key: (n, 4) xywh}`` and ``{setting: {key: 1-based kept indices}}``."""
        keys = list(gt)
        boxes = [np.asarray(gt[k], dtype=np.float64).reshape(-1, 4) for k in keys]
        keep = {}
        for setting, per_img in keep_index.items():
            masks = []
            for k, b in zip(keys, boxes):
                masks.append(_keep_mask(per_img.get(k, []), b.shape[0], k, setting))
            keep[setting] = masks
        return cls(keys, boxes, keep)


def _keep_mask(one_based: Iterable, num_faces: int, key: str, setting: str) -> np.ndarray:
    idx = np.asarray(one_based, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 1 or idx.max() > num_faces):
        raise ValueError(f'{setting} keep list of {key} has index {idx.min()}..{idx.max()} '
                         f'outside 1..{num_faces} (indices are 1-based)')
    mask = np.zeros(num_faces, dtype=bool)
    mask[idx - 1] = True
    return mask


def _mat_str(cell) -> str:
    """A MATLAB char array read by ``scipy.io.loadmat`` as a python string."""
    arr = np.asarray(cell)
    while arr.dtype == object:
        arr = np.asarray(arr.reshape(-1)[0])
    return str(arr.reshape(-1)[0]) if arr.size else ''


def _cell_list(cell) -> List:
    """Elements of a MATLAB cell column (``(n, 1)`` object array)."""
    return list(np.asarray(cell, dtype=object).reshape(-1))


def _mat_mtime(path: str) -> float:
    return os.stat(path).st_mtime_ns


def load_wider_gt(gt_dir: str, settings: Sequence[str] = SETTINGS) -> WiderFaceGT:
    """Load the official evaluation ground truth from ``gt_dir``.

    ``gt_dir`` holds ``wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat`` (the
    ``ground_truth`` folder of the official ``eval_tools``). Results are cached per folder and
    file modification time.
    """
    paths = [osp.join(gt_dir, GT_FILE)] + [osp.join(gt_dir, SETTING_FILE.format(s))
                                           for s in settings]
    missing = [p for p in paths if not osp.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f'WIDER FACE evaluation ground truth not found: {missing}. gt_dir must hold '
            f'{GT_FILE} and wider_{{easy,medium,hard}}_val.mat (eval_tools/ground_truth).')
    stamp = tuple((osp.abspath(p), _mat_mtime(p)) for p in paths)
    return _load_wider_gt_cached(stamp, tuple(settings))


@functools.lru_cache(maxsize=4)
def _load_wider_gt_cached(stamp, settings) -> WiderFaceGT:
    from scipy.io import loadmat
    gt_path = stamp[0][0]
    mat = loadmat(gt_path)
    for field in ('event_list', 'file_list', 'face_bbx_list'):
        if field not in mat:
            raise ValueError(f'{gt_path} has no {field!r}: not an official WIDER FACE gt file')
    events = [_mat_str(e) for e in _cell_list(mat['event_list'])]
    file_lists = _cell_list(mat['file_list'])
    box_lists = _cell_list(mat['face_bbx_list'])
    keys, boxes, sizes = [], [], []
    for event, files, bbx in zip(events, file_lists, box_lists):
        files, bbx = _cell_list(files), _cell_list(bbx)
        if len(files) != len(bbx):
            raise ValueError(f'{gt_path}: event {event} has {len(files)} files and '
                             f'{len(bbx)} box lists')
        sizes.append(len(files))
        for name, b in zip(files, bbx):
            keys.append(f'{event}/{_mat_str(name)}')
            # MATLAB adds x + w in the stored integer class, exact in float64 too.
            boxes.append(np.asarray(b, dtype=np.float64).reshape(-1, 4))
    keep = {}
    for setting, (path, _) in zip(settings, stamp[1:]):
        smat = loadmat(path)
        if 'gt_list' not in smat:
            raise ValueError(f'{path} has no gt_list: not an official WIDER FACE setting file')
        gt_lists = _cell_list(smat['gt_list'])
        if len(gt_lists) != len(sizes):
            raise ValueError(f'{path} has {len(gt_lists)} events, {gt_path} has {len(sizes)}')
        masks = []
        pos = 0
        for ev, (event_gt, n_img) in enumerate(zip(gt_lists, sizes)):
            event_gt = _cell_list(event_gt)
            if len(event_gt) != n_img:
                raise ValueError(f'{path}: event {events[ev]} has {len(event_gt)} keep lists '
                                 f'for {n_img} images')
            for g in event_gt:
                masks.append(_keep_mask(np.asarray(g, dtype=np.int64), boxes[pos].shape[0],
                                        keys[pos], setting))
                pos += 1
        keep[setting] = masks
    return WiderFaceGT(keys, boxes, keep)


def boxoverlap_plus1(gt_xyxy: np.ndarray, pred_xyxy: np.ndarray) -> np.ndarray:
    """IoU matrix ``(num_pred, num_gt)`` exactly as the official ``boxoverlap.m``.

    Boxes are ``x1 y1 x2 y2`` with ``x2 = x + w``; widths and heights get ``+1``; the
    intersection is zero when its width or height is <= 0. The floating-point operations are
    done in the same order as the MATLAB code.
    """
    g = gt_xyxy[None, :, :]
    p = pred_xyxy[:, None, :]
    w = np.minimum(g[..., 2], p[..., 2]) - np.maximum(g[..., 0], p[..., 0]) + 1
    h = np.minimum(g[..., 3], p[..., 3]) - np.maximum(g[..., 1], p[..., 1]) + 1
    inter = w * h
    garea = (gt_xyxy[:, 2] - gt_xyxy[:, 0] + 1) * (gt_xyxy[:, 3] - gt_xyxy[:, 1] + 1)
    parea = (pred_xyxy[:, 2] - pred_xyxy[:, 0] + 1) * (pred_xyxy[:, 3] - pred_xyxy[:, 1] + 1)
    with np.errstate(divide='ignore', invalid='ignore'):
        o = inter / (garea[None, :] + parea[:, None] - inter)
    o[(w <= 0) | (h <= 0)] = 0
    return o


def normalize_scores(scores: np.ndarray, all_scores: Optional[np.ndarray] = None) -> np.ndarray:
    """Min-max normalise ``scores`` as ``norm_score.m`` (single precision, see module doc).

    ``all_scores`` (default: ``scores``) gives the extremes. Returns float64 values of the
    float32 results (MATLAB stores them back into a double matrix).
    """
    ref = scores if all_scores is None else all_scores
    s32 = np.asarray(scores, dtype=np.float64).astype(np.float32)
    if ref.size == 0:
        return s32.astype(np.float64)
    ref32 = np.asarray(ref, dtype=np.float64).astype(np.float32)
    max32 = np.maximum(np.finfo(np.float32).tiny, ref32.max())
    min32 = np.minimum(np.finfo(np.float32).max, ref32.min())
    with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
        norm = (s32 - min32) / (max32 - min32)
    return norm.astype(np.float64)


def voc_ap(rec: np.ndarray, prec: np.ndarray) -> float:
    """VOC all-point AP exactly as ``VOCap.m`` (MATLAB ``max`` ignores NaN: ``np.fmax``)."""
    mrec = np.concatenate([[0.], np.asarray(rec, np.float64), [1.]])
    mpre = np.concatenate([[0.], np.asarray(prec, np.float64), [0.]])
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]
    i = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def _check_pred(key: str, dets) -> np.ndarray:
    arr = np.asarray(dets, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 5)
    if arr.ndim != 2 or arr.shape[1] < 5:
        raise ValueError(f'prediction of {key} must be an (n, 5) array of x y w h score, '
                         f'got shape {arr.shape}')
    arr = arr[:, :5]
    if not np.isfinite(arr).all():
        raise ValueError(f'prediction of {key} has non-finite values')
    return arr


def evaluate_wider(preds: Mapping[str, np.ndarray],
                   gt: WiderFaceGT,
                   iou_thr: float = 0.5,
                   thresh_num: int = 1000,
                   missing: str = 'skip',
                   settings: Optional[Sequence[str]] = None) -> dict:
    """Evaluate predictions with the official WIDER FACE algorithm.

    Args:
        preds: ``{'event/name': (n, 5) array of x y w h score}`` in original image pixels
            (``x y w h`` as in the submission files). An empty array is an image predicted
            without detections.
        gt: the ground truth (:func:`load_wider_gt` or :meth:`WiderFaceGT.from_arrays`).
        iou_thr: IoU threshold (0.5 officially).
        thresh_num: number of score thresholds (1000 officially).
        missing: ``'skip'`` evaluates only the images with an entry in ``preds``;
            ``'empty'`` evaluates every ground-truth image, a missing one as an image without
            detections (the official behaviour for a missing file).
        settings: settings to evaluate (default: all settings of ``gt``).

    Returns:
        dict: ``{setting: {'ap', 'precision', 'recall', 'num_faces', 'num_faces_missing'}}``
        plus ``'thresholds'``, ``'num_images'`` (evaluated), ``'num_images_missing'`` (gt images
        without an entry), ``'num_images_unknown'`` / ``'unknown_images'`` (entries that are not
        ground-truth images; they are not evaluated) and ``'num_predictions'``.
    """
    if missing not in ('skip', 'empty'):
        raise ValueError(f"missing must be 'skip' or 'empty', got {missing!r}")
    settings = list(gt.settings if settings is None else settings)
    for s in settings:
        if s not in gt.keep:
            raise KeyError(f'setting {s!r} not in the ground truth ({gt.settings})')
    unknown = sorted(k for k in preds if k not in gt.index)
    present = np.zeros(len(gt), dtype=bool)
    for k in preds:
        i = gt.index.get(k)
        if i is not None:
            present[i] = True
    evaluated = present.copy() if missing == 'skip' else np.ones(len(gt), dtype=bool)

    # Read (and sort) the predictions of the ground-truth images, as read_pred.m.
    img_ids, sorted_preds = [], []
    for i in np.nonzero(present)[0]:
        key = gt.image_keys[i]
        arr = _check_pred(key, preds[key])
        if arr.shape[0] == 0:
            continue
        order = np.argsort(-arr[:, 4], kind='stable')
        img_ids.append(i)
        sorted_preds.append(arr[order])
    all_scores = (np.concatenate([p[:, 4] for p in sorted_preds])
                  if sorted_preds else np.zeros(0))

    # Match, image by image (images without faces or predictions are skipped).
    m_scores, m_matched, m_gidx = [], [], []
    for i, p in zip(img_ids, sorted_preds):
        g = gt.boxes[i]
        if g.shape[0] == 0:
            continue
        gxyxy = np.concatenate([g[:, :2], g[:, :2] + g[:, 2:4]], axis=1)
        pxyxy = np.concatenate([p[:, :2], p[:, :2] + p[:, 2:4]], axis=1)
        o = boxoverlap_plus1(gxyxy, pxyxy)
        if np.isnan(o).any():
            o = np.where(np.isnan(o), -np.inf, o)
        idx = o.argmax(axis=1)
        best = o[np.arange(o.shape[0]), idx]
        m_scores.append(p[:, 4])
        m_matched.append(best >= iou_thr)
        m_gidx.append(idx + gt.face_offsets[i])
    if m_scores:
        raw = np.concatenate(m_scores)
        matched = np.concatenate(m_matched)
        gidx = np.concatenate(m_gidx)
    else:
        raw, matched, gidx = np.zeros(0), np.zeros(0, bool), np.zeros(0, np.int64)
    norm = normalize_scores(raw, all_scores)
    valid = ~np.isnan(norm)  # NaN (all scores equal) never passes a threshold
    thresholds = 1 - np.arange(1, thresh_num + 1, dtype=np.float64) / thresh_num

    order = np.argsort(norm[valid], kind='stable')
    s_sorted = norm[valid][order]
    # number of valid predictions with score < threshold
    below = np.searchsorted(s_sorted, thresholds, side='left')

    result = dict(thresholds=thresholds)
    for s in settings:
        keep_flat = gt.keep_flat[s]
        keep_g = np.zeros(matched.shape[0], dtype=bool)
        keep_g[matched] = keep_flat[gidx[matched]]
        ignored = matched & ~keep_g
        cand = np.nonzero(matched & keep_g)[0]
        tp = np.zeros(matched.shape[0], dtype=np.int64)
        if cand.size:
            _, first = np.unique(gidx[cand], return_index=True)
            tp[cand[first]] = 1
        prop = (~ignored).astype(np.int64)
        cum_prop = np.concatenate([[0], np.cumsum(prop[valid][order])])
        cum_tp = np.concatenate([[0], np.cumsum(tp[valid][order])])
        n_prop = cum_prop[-1] - cum_prop[below]
        n_tp = cum_tp[-1] - cum_tp[below]
        count_face = int(gt.keep_counts[s][evaluated].sum())
        total_face = int(keep_flat.sum())
        with np.errstate(divide='ignore', invalid='ignore'):
            precision = n_tp / n_prop
            recall = n_tp / count_face if count_face else np.full(thresh_num, np.nan)
        ap = voc_ap(recall, precision) if count_face else float('nan')
        result[s] = dict(
            ap=ap, precision=precision, recall=recall, num_faces=count_face,
            num_faces_missing=total_face - count_face, tp=n_tp, proposals=n_prop)
    result.update(
        num_images=int(evaluated.sum()),
        num_images_missing=int((~present).sum()),
        num_images_unknown=len(unknown),
        unknown_images=unknown,
        num_predictions=int(all_scores.size),
        missing=missing)
    return result
