"""ONNX Runtime inference of exported RetinaFace models with a numpy post-processor.

This module depends only on ``numpy``, ``opencv-python`` (``cv2``) and, for
:class:`ONNXFaceDetector`, ``onnxruntime`` (imported lazily). It does not import torch, mmcv or
mmdet, so it can be copied alone next to an ``.onnx`` file for deployment (or loaded by path with
``importlib``; importing it as ``projects.retinaface.apis.onnx_inference`` runs the package's
``__init__``, which does import mmdet).

The ``.onnx`` files written by ``tools/deployment/pytorch2onnx.py`` carry everything the
post-processor needs as JSON in the model's ``metadata_props`` under the key
:data:`METADATA_KEY`:

- ``preprocess``: the config's test pipeline resize (``None`` = original size, or ``scale``
  ``[w, h]`` with ``keep_ratio``), ``mean`` / ``std`` / ``bgr_to_rgb`` of the data preprocessor and
  its ``pad_size_divisor`` / ``pad_value`` (bottom / right padding, as mmdet's
  ``DetDataPreprocessor``);
- ``levels``: per feature level the ``stride`` ``[w, h]`` and the ``base_anchors`` (A, 4) of
  mmdet's ``AnchorGenerator`` (centre offsets included), so anchors of level ``l`` at cell
  ``(y, x)`` are ``base_anchors + [x*sw, y*sh, x*sw, y*sh]``, ordered location-major
  (row-major over ``y, x``) and anchor-minor, which is mmdet's order;
- ``bbox_coder``: ``DeltaXYWHBBoxCoder`` parameters (``means``, ``stds``, ``wh_ratio_clip``,
  ``clip_border``); ``landmarks``: ``num_keypoints`` and ``variance`` of ``LandmarkCoder``;
- ``prior_bbox_coder`` (format version 2, models with a two-stage ``CascadeRetinaFaceHead``):
  the stage-1 coder. Scores, box and landmark deltas are stage 2's; in ``'deltas'`` mode the
  graph also returns stage 1's box deltas ``prior_deltas`` (1, N, 4), and stage 2's priors are
  the anchors decoded with them (not clipped), as ``CascadeRetinaFaceHead.predict_by_feat``
  does; in ``'decoded'`` mode the graph does both decodings;
- ``test_cfg``: ``score_thr``, ``nms_pre`` (per level), ``iou_threshold``, ``max_per_img``,
  ``min_bbox_size`` of the config;
- ``outputs``: ``'deltas'`` (graph outputs ``scores`` (1, N, C): face probabilities (softmax /
  sigmoid; a two-class softmax is exported as the sigmoid of the face-minus-background logit),
  ``bbox_deltas`` (1, N, 4), ``kpt_deltas`` (1, N, 2K)) or ``'decoded'`` (``--with-postprocess``:
  ``scores``, ``boxes`` (1, N, 4) in network-input pixels, not clipped, and ``keypoints``
  (1, N, K, 2)). ``N`` is the number of anchors of the input size (dynamic).

The post-processing reproduces ``RetinaFaceHead.predict_by_feat`` step by step: per level, keep
the scores ``> score_thr`` and at most ``nms_pre`` of them (top-k) *before decoding*; decode only
those (anchors are cached per input size); clip boxes to the resized image; rescale boxes and
landmarks to original pixels; drop boxes with ``w`` or ``h <= min_bbox_size``; greedy NMS with
mmcv's rule (IoU without the +1 pixel convention, suppress when ``IoU > iou_threshold``, highest
score first), computed exactly but only between boxes that can overlap (:func:`nms_sparse`;
``nms_backend='cv2'`` / ``'numpy'`` run OpenCV's ``cv2.dnn.NMSBoxes`` or a box-by-box loop,
with the same result); keep ``max_per_img``; decode the landmarks of the kept detections.
Detections equal the PyTorch model's (``inference_detector``) to about 1e-4 pixel
(tests/test_tools/test_onnx_export.py).

Speed notes (1 CPU thread; README "Benchmark"): scratch buffers of the pre-processing are kept
per detector (allocating fresh megabytes per image cost 5 ms at 1920x1080 in page faults), and
the sparse NMS is 3-6x faster than ``NMSBoxes`` on the 1,500-5,800 candidates that the
evaluation threshold of 0.02 leaves.
"""
import json
import math
import os
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

#: Key of the JSON metadata in the ONNX ``metadata_props``.
METADATA_KEY = 'retinaface'
#: Version of the metadata layout written by ``pytorch2onnx.py`` (2 adds ``prior_bbox_coder``
#: for cascade heads; single-stage models are still written as 1).
METADATA_VERSION = 1
CASCADE_METADATA_VERSION = 2
SUPPORTED_METADATA_VERSIONS = (METADATA_VERSION, CASCADE_METADATA_VERSION)
DELTA_OUTPUTS = ('scores', 'bbox_deltas', 'kpt_deltas')
#: Extra graph output of cascade models in ``'deltas'`` mode: stage-1 box deltas.
PRIOR_OUTPUT = 'prior_deltas'
DECODED_OUTPUTS = ('scores', 'boxes', 'keypoints')
# ``nms(backend='auto')`` runs OpenCV's box-by-box NMSBoxes up to this many candidates and the
# sparse NMS above: on 400 WIDER train images (INT8 model, score_thr 0.02, 1 thread) NMSBoxes
# took a median 0.04 ms where nms_sparse took 0.26 (100-300 candidates) and was faster on 388
# of the 389 images with fewer than 1,500; with 2,000 and more it was slower (1.5-2.1 ms
# against 0.9-1.7), and 2.9 ms against 0.4 on a crowd photo with 1,554 candidates, 750 kept.
AUTO_CV2_MAX_BOXES = 1500


def _cpuinfo_fields(cpuinfo: str = '/proc/cpuinfo') -> Dict[str, str]:
    """The ``key: value`` lines of the first processor in ``cpuinfo`` (empty where the file
    cannot be read: other systems)."""
    fields = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break  # the end of the first processor's block
                    continue
                key, sep, value = line.partition(':')
                if sep:
                    fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags(cpuinfo: str = '/proc/cpuinfo') -> frozenset:
    """The x86 feature flags of this CPU (the ``flags`` line of ``cpuinfo``); empty where the
    file cannot be read or has no such line (other systems, other architectures)."""
    return frozenset(_cpuinfo_fields(cpuinfo).get('flags', '').split())


def cpu_model_name(cpuinfo: str = '/proc/cpuinfo') -> str:
    """``'<model name> (family F model M)'`` of this CPU from ``cpuinfo`` (the family and model
    numbers tell CPU generations apart where the name does not, e.g. ``AMD EPYC``); ``''``
    where unknown."""
    fields = _cpuinfo_fields(cpuinfo)
    name = fields.get('model name', '')
    if name and 'cpu family' in fields and 'model' in fields:
        name += f' (family {fields["cpu family"]} model {fields["model"]})'
    return name


# ---------------------------------------------------------------------------- metadata
def read_metadata(model) -> dict:
    """The RetinaFace metadata of an ONNX model.

    Args:
        model: a path to an ``.onnx`` file, an ``onnxruntime.InferenceSession`` or an
            ``onnx.ModelProto``.

    Returns:
        dict: the decoded JSON (see the module docstring).
    """
    if isinstance(model, (str, os.PathLike)):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        model = ort.InferenceSession(os.fspath(model), opts, providers=['CPUExecutionProvider'])
    if hasattr(model, 'get_modelmeta'):
        props = model.get_modelmeta().custom_metadata_map
    elif hasattr(model, 'metadata_props'):
        props = {p.key: p.value for p in model.metadata_props}
    else:
        raise TypeError(f'cannot read ONNX metadata from {type(model).__name__}')
    if METADATA_KEY not in props:
        raise ValueError(f'the ONNX model has no {METADATA_KEY!r} metadata; export it with '
                         'tools/deployment/pytorch2onnx.py')
    meta = json.loads(props[METADATA_KEY])
    if meta.get('format_version') not in SUPPORTED_METADATA_VERSIONS:
        raise ValueError(f'unsupported RetinaFace metadata version {meta.get("format_version")}'
                         f' (this module reads versions {SUPPORTED_METADATA_VERSIONS})')
    return meta


def write_metadata(onnx_file: str, meta: dict, extra: Optional[Dict[str, str]] = None) -> None:
    """Store ``meta`` as JSON under :data:`METADATA_KEY` (plus ``extra`` string entries) in the
    ``metadata_props`` of ``onnx_file``, in place (needs the ``onnx`` package)."""
    import onnx
    proto = onnx.load(onnx_file)
    props = {p.key: p.value for p in proto.metadata_props}
    props[METADATA_KEY] = json.dumps(meta)
    props.update(extra or {})
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, onnx_file)


# ---------------------------------------------------------------------------- preprocessing
def resized_size(ori_hw: Tuple[int, int], resize: Optional[dict]) -> Tuple[int, int]:
    """(h, w) after the test pipeline's resize (mmcv ``imrescale`` / ``imresize`` rules)."""
    h, w = ori_hw
    if not resize:
        return h, w
    sw, sh = resize['scale']
    if not resize.get('keep_ratio', True):
        return int(sh), int(sw)
    ratio = min(max(sw, sh) / max(h, w), min(sw, sh) / min(h, w))
    return int(h * float(ratio) + 0.5), int(w * float(ratio) + 0.5)


def _scratch(cache: Optional[dict], key: str, shape: tuple, dtype=np.uint8) -> Optional[np.ndarray]:
    """A buffer of ``cache`` (reused while the shape stays the same), or None without one."""
    if cache is None:
        return None
    buf = cache.get(key)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = cache[key] = np.empty(shape, dtype=dtype)
    return buf


def preprocess(img: np.ndarray,
               pre: dict,
               out: Optional[np.ndarray] = None,
               cache: Optional[dict] = None) -> Tuple[np.ndarray, dict]:
    """Resize, normalise and pad one BGR image like the PyTorch test pipeline.

    Args:
        img: (H, W, 3) uint8 BGR image (``cv2.imread`` / mmcv's ``LoadImageFromFile``).
        pre: the ``preprocess`` entry of the metadata.
        out: optional (1, 3, Hp, Wp) float32 buffer to fill (its padding must already hold
            ``pad_value``); allocated when None.
        cache: optional dict kept by the caller between images, in which the scratch buffers
            (resized image, colour planes) are reused: allocating megabytes afresh for every
            image costs more than the arithmetic (page faults: 5 ms of 6 at 1920x1080).

    Returns:
        tuple: the (1, 3, Hp, Wp) float32 input and ``img_meta`` with ``ori_shape``,
        ``img_shape`` (after resize, before padding), ``pad_shape`` and ``scale_factor``
        ``(w_scale, h_scale)``.
    """
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        shape = getattr(img, 'shape', None)
        raise ValueError(f'expected an (H, W, 3) BGR image array, got shape {shape}')
    if img.size == 0:
        raise ValueError(f'empty image of shape {img.shape}')
    ori_h, ori_w = img.shape[:2]
    h, w = resized_size((ori_h, ori_w), pre.get('resize'))
    if (h, w) != (ori_h, ori_w):
        img = cv2.resize(img, (w, h), dst=_scratch(cache, 'resized', (h, w, 3), img.dtype),
                         interpolation=cv2.INTER_LINEAR)
    div = int(pre.get('pad_size_divisor', 1) or 1)
    hp, wp = int(math.ceil(h / div)) * div, int(math.ceil(w / div)) * div
    if out is None or out.shape != (1, 3, hp, wp):
        out = np.full((1, 3, hp, wp), pre.get('pad_value', 0), dtype=np.float32)
    mean = pre['mean']
    std = pre['std']
    order = (2, 1, 0) if pre.get('bgr_to_rgb', False) else (0, 1, 2)
    planes = None
    # OpenCV's bindings take a one-column plane of up to 4 rows for a scalar (a 1x1 image
    # failed, a 4x1 one came out wrong): images one pixel wide or high go through numpy
    if img.dtype == np.uint8 and min(h, w) > 1:
        if cache is None:
            planes = cv2.split(img)
        else:
            planes = cv2.split(img, [_scratch(cache, f'plane{c}', (h, w)) for c in range(3)])
    for c, src in enumerate(order):
        dst = out[0, c, :h, :w]
        if planes is not None:
            # OpenCV's SIMD uint8 -> float32 subtraction: the same float32 values as numpy's
            # (x - mean is exact for uint8 x, then rounded once), several times faster
            res = cv2.subtract(planes[src], (float(np.float32(mean[c])), 0.0, 0.0, 0.0),
                               dst=dst, dtype=cv2.CV_32F)
            if not np.shares_memory(res, out):
                dst[...] = res
        else:
            np.subtract(img[:, :, src], np.float32(mean[c]), out=dst, dtype=np.float32)
        if std[c] != 1:
            np.divide(dst, np.float32(std[c]), out=dst)
    img_meta = dict(
        ori_shape=(ori_h, ori_w),
        img_shape=(h, w),
        pad_shape=(hp, wp),
        scale_factor=(w / ori_w, h / ori_h))
    return out, img_meta


# ---------------------------------------------------------------------------- anchors
def featmap_sizes(pad_shape: Tuple[int, int], levels: Sequence[dict]) -> List[Tuple[int, int]]:
    """Feature map (h, w) of each level for an input of ``pad_shape`` (stride-s convolutions
    with 'same' padding give ``ceil(size / s)``)."""
    return [(int(math.ceil(pad_shape[0] / lv['stride'][1])),
             int(math.ceil(pad_shape[1] / lv['stride'][0]))) for lv in levels]


def grid_anchors(levels: Sequence[dict],
                 sizes: Sequence[Tuple[int, int]]) -> List[np.ndarray]:
    """Anchors (n_l, 4) float32 of every level, in mmdet's ``grid_priors`` order."""
    out = []
    for lv, (fh, fw) in zip(levels, sizes):
        base = np.asarray(lv['base_anchors'], dtype=np.float32).reshape(-1, 4)
        sw, sh = lv['stride']
        xs = np.arange(fw, dtype=np.float32) * np.float32(sw)
        ys = np.arange(fh, dtype=np.float32) * np.float32(sh)
        xx = np.tile(xs, fh)
        yy = np.repeat(ys, fw)
        shifts = np.stack([xx, yy, xx, yy], axis=-1)
        out.append((shifts[:, None, :] + base[None, :, :]).reshape(-1, 4))
    return out


class AnchorCache:
    """All levels' anchors (N, 4), concatenated, per input size (the last ``max_size`` sizes
    are kept)."""

    def __init__(self, levels: Sequence[dict], max_size: int = 8) -> None:
        self.levels = list(levels)
        self.max_size = max_size
        self._cache: 'OrderedDict[Tuple[int, int], np.ndarray]' = OrderedDict()

    def __call__(self, pad_shape: Tuple[int, int]) -> np.ndarray:
        key = (int(pad_shape[0]), int(pad_shape[1]))
        anchors = self._cache.get(key)
        if anchors is None:
            anchors = np.concatenate(grid_anchors(self.levels, featmap_sizes(key, self.levels)))
            self._cache[key] = anchors
            while len(self._cache) > self.max_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return anchors


# ---------------------------------------------------------------------------- coders
def decode_boxes(anchors: np.ndarray,
                 deltas: np.ndarray,
                 coder: dict,
                 max_shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """``DeltaXYWHBBoxCoder.decode`` (mmdet 3.x ``delta2bbox``) in numpy, float32."""
    means = np.asarray(coder.get('means', (0., 0., 0., 0.)), np.float32)
    stds = np.asarray(coder.get('stds', (1., 1., 1., 1.)), np.float32)
    d = deltas.astype(np.float32, copy=False) * stds + means
    pxy = (anchors[:, :2] + anchors[:, 2:]) * np.float32(0.5)
    pwh = anchors[:, 2:] - anchors[:, :2]
    dxy_wh = pwh * d[:, :2]
    max_ratio = np.float32(abs(math.log(coder.get('wh_ratio_clip', 16 / 1000))))
    if coder.get('add_ctr_clamp', False):
        c = np.float32(coder.get('ctr_clamp', 32))
        dxy_wh = np.clip(dxy_wh, -c, c)
        dwh = np.minimum(d[:, 2:], max_ratio)
    else:
        dwh = np.clip(d[:, 2:], -max_ratio, max_ratio)
    gxy = pxy + dxy_wh
    gwh = pwh * np.exp(dwh)
    half = gwh * np.float32(0.5)
    boxes = np.concatenate([gxy - half, gxy + half], axis=1)
    if max_shape is not None and coder.get('clip_border', True):
        clip_boxes_(boxes, max_shape)
    return boxes


def clip_boxes_(boxes: np.ndarray, max_shape: Tuple[int, int]) -> np.ndarray:
    """Clip xyxy boxes in place to ``[0, w] x [0, h]`` (mmdet's rule)."""
    np.clip(boxes[:, 0::2], 0, max_shape[1], out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0, max_shape[0], out=boxes[:, 1::2])
    return boxes


def decode_keypoints(anchors: np.ndarray, deltas: np.ndarray, variance: float) -> np.ndarray:
    """``LandmarkCoder.decode`` for 2D points: (n, 2K) deltas -> (n, K, 2) points."""
    ctr = ((anchors[:, :2] + anchors[:, 2:]) * np.float32(0.5))[:, None, :]
    scale = ((anchors[:, 2:] - anchors[:, :2]) * np.float32(variance))[:, None, :]
    deltas = deltas.astype(np.float32, copy=False)
    return deltas.reshape(deltas.shape[0], deltas.shape[1] // 2, 2) * scale + ctr


# ---------------------------------------------------------------------------- NMS
def _columns(boxes: np.ndarray) -> tuple:
    """Contiguous float32 ``x1, y1, x2, y2`` columns and the areas (mmcv's rule: no +1)."""
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, k], dtype=np.float32) for k in range(4))
    return x1, y1, x2, y2, (x2 - x1) * (y2 - y1)


def _iou(cols: tuple, i, j) -> np.ndarray:
    """IoU of boxes ``i`` and ``j`` (indices or index arrays, broadcast) with exactly the
    float32 operations of mmcv's CPU NMS kernel; 0 / 0 of empty boxes gives NaN (never
    above a threshold)."""
    x1, y1, x2, y2, areas = cols
    zero = np.float32(0)
    w = np.maximum(zero, np.minimum(x2[i], x2[j]) - np.maximum(x1[i], x1[j]))
    h = np.maximum(zero, np.minimum(y2[i], y2[j]) - np.maximum(y1[i], y1[j]))
    inter = w * h
    with np.errstate(invalid='ignore', divide='ignore'):
        return inter / (areas[i] + areas[j] - inter)


def nms_numpy(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
              max_num: int = -1) -> np.ndarray:
    """Greedy NMS in numpy with mmcv's CPU rule; returns kept indices, highest score first.

    IoU uses ``w = x2 - x1`` (no +1, float32), a box is suppressed when its IoU with a kept box
    is ``> iou_threshold``; ties in score keep the input order. With ``max_num > 0`` it stops
    after ``max_num`` boxes (the first ``max_num`` of the full result: exact).
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    cols = _columns(boxes)
    order = np.argsort(-scores, kind='stable')
    thr = np.float32(iou_threshold)
    keep = []
    while order.size > 0 and (max_num <= 0 or len(keep) < max_num):
        i = order[0]
        keep.append(i)
        rest = order[1:]
        order = rest[~(_iou(cols, i, rest) > thr)]
    return np.asarray(keep, dtype=np.int64)


def overlap_candidates(boxes: np.ndarray, iou_threshold: float) -> Tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)`` (each pair once) that can have ``IoU > iou_threshold``.

    A superset of the pairs above the threshold, found without comparing all pairs: boxes
    with zero or negative width / height never overlap anything (their IoU is 0 under mmcv's
    rule); ``IoU > t`` needs the horizontal overlap to exceed ``t`` times the width of both
    boxes (``inter <= w_overlap * min(h)`` and ``union >= each area``), so the boxes are
    sorted by ``x1`` and each is paired only with the later boxes that start before
    ``x2 - 0.9 t w`` (0.9: a margin for float rounding); to keep that sweep local, the image is
    cut into horizontal bands (each box listed in every band its y-extent touches) and a pair
    is reported only in the band where the two boxes' vertical overlap begins.
    """
    none = np.zeros(0, dtype=np.int64)
    # float64: the float32 coordinates exactly, and sort keys / limits without rounding
    # trouble even for boxes a few float32 steps wide
    x1, y1, x2, y2 = (boxes[:, k].astype(np.float64) for k in range(4))
    w, h = x2 - x1, y2 - y1
    ok = np.flatnonzero((w > 0) & (h > 0))
    if ok.size < 2:
        return none, none
    band_h = max(8.0, 2.0 * float(np.median(h[ok])))
    y0 = float(y1[ok].min())
    first = np.floor((y1[ok] - y0) / band_h).astype(np.int64)
    nbands = np.floor((y2[ok] - y0) / band_h).astype(np.int64) - first + 1
    # one entry per (box, band) the box touches, sorted by band, then x1
    box = np.repeat(ok, nbands)
    start = np.cumsum(nbands) - nbands
    band = np.arange(box.size) - np.repeat(start - first, nbands)
    x0 = float(x1[ok].min())
    span = float(x2[ok].max()) - x0 + 1.0
    key = band * span + (x1[box] - x0)
    order = np.argsort(key)  # ties in any order: each pair is still found once
    key, box, band = key[order], box[order], band[order]
    # partners of entry e: the following entries of its band with x1 < x2_e - 0.9 t w_e
    limit = band * span + (x2[box] - 0.9 * iou_threshold * w[box] - x0)
    nxt = np.arange(1, box.size + 1)
    count = np.maximum(np.searchsorted(key, limit, 'left') - nxt, 0)
    total = int(count.sum())
    if total == 0:
        return none, none
    src = np.repeat(np.arange(box.size), count)
    dst = np.arange(total) - np.repeat(np.cumsum(count) - count - nxt, count)
    a, b = box[src], box[dst]
    top = np.maximum(y1[a], y1[b])
    keep = (np.minimum(y2[a], y2[b]) > top) & (
        np.floor((top - y0) / band_h).astype(np.int64) == band[src])
    return a[keep], b[keep]


def nms_sparse(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
               max_num: int = -1) -> np.ndarray:
    """Greedy NMS with mmcv's rule (see :func:`nms_numpy`), exact, computed on the sparse
    graph of overlapping pairs instead of box by box.

    The pairs that may overlap come from :func:`overlap_candidates`; their IoU is computed
    with exactly the float32 operations of mmcv's CPU kernel, and a pair above the threshold
    becomes an edge from the higher-ranked box (score order, ties in input order) to the
    lower one. Greedy NMS keeps a box iff none of its higher-ranked neighbours is kept; that
    is resolved in rounds over all boxes at once: a box whose higher-ranked neighbours are all
    suppressed is kept, a box with a kept one is suppressed (the best undecided box is always
    decided, so every round makes progress). Long suppression chains would need many rounds:
    after 64 the remaining boxes are finished by :func:`nms_numpy`'s loop.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    n = boxes.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if iou_threshold <= 0 or not np.isfinite(boxes).all():
        return nms_numpy(boxes, scores, iou_threshold, max_num)
    order = np.argsort(-scores, kind='stable')
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    a, b = overlap_candidates(boxes, iou_threshold)
    edge = _iou(_columns(boxes), a, b) > np.float32(iou_threshold)
    ra, rb = rank[a[edge]], rank[b[edge]]
    src, dst = np.minimum(ra, rb), np.maximum(ra, rb)  # higher-ranked -> lower-ranked
    undecided, kept, suppressed = 0, 1, 2
    state = np.zeros(n, dtype=np.int8)  # by rank
    for _ in range(64):
        # every live edge joins two undecided boxes: a box without one from above is kept,
        # and everything it overlaps below is suppressed
        blocked = np.zeros(n, dtype=bool)
        blocked[dst] = True
        new = (state == undecided) & ~blocked
        state[new] = kept
        state[dst[new[src]]] = suppressed
        live = (state[src] == undecided) & (state[dst] == undecided)
        src, dst = src[live], dst[live]
        if not (state == undecided).any():
            keep = order[np.flatnonzero(state == kept)]
            return keep[:max_num] if max_num > 0 else keep
    # rare: finish sequentially; boxes decided so far stay decided (greedy is sequential)
    rest = np.flatnonzero(state != suppressed)
    keep = rest[nms_numpy(boxes[order[rest]], -rest.astype(np.float32), iou_threshold)]
    keep = order[np.sort(keep)]
    return keep[:max_num] if max_num > 0 else keep


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
        max_num: int = -1, backend: str = 'auto') -> np.ndarray:
    """Greedy NMS (mmcv's rule, see :func:`nms_numpy`); kept indices, highest score first.

    ``backend='sparse'`` runs :func:`nms_sparse`, which compares only boxes that can overlap
    (several times faster than box-by-box loops on thousands of candidates); ``'cv2'``
    OpenCV's C++ ``cv2.dnn.NMSBoxes``, which follows the same rule (continuous-coordinate
    IoU, suppress when ``> iou_threshold``, stable order by descending score) and has less
    fixed cost (faster up to about :data:`AUTO_CV2_MAX_BOXES` candidates); ``'auto'`` picks
    ``'cv2'`` up to that many boxes (with positive scores) and ``'sparse'`` above; ``'numpy'``
    the pure-numpy loop (also used for ``'cv2'`` when a score is <= 0, which ``NMSBoxes``
    would drop). All give the same indices.
    """
    if backend not in ('auto', 'sparse', 'cv2', 'numpy'):
        raise ValueError(f"backend must be 'auto', 'sparse', 'cv2' or 'numpy', got {backend!r}")
    boxes = np.asarray(boxes, dtype=np.float32)
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    if backend == 'auto':
        few = boxes.shape[0] <= AUTO_CV2_MAX_BOXES and scores.min() > 0
        backend = 'cv2' if few else 'sparse'
    if backend == 'sparse':
        return nms_sparse(boxes, scores, iou_threshold, max_num)
    # NMSBoxes keeps only scores > its (non-negative) threshold and reads scores as float32
    if backend == 'numpy' or scores.min() <= 0:
        return nms_numpy(boxes, scores, iou_threshold, max_num)
    if max_num <= 0 or boxes.shape[0] <= 2 * max_num:
        return _nms_cv2(boxes, scores, iou_threshold, max_num)
    # Greedy NMS decides each box from the higher-scored boxes only, so NMS of the best ``m``
    # candidates gives exactly the first kept boxes of the full run: once it keeps
    # ``max_num`` boxes, the rest need not be looked at (usually a small prefix suffices).
    order = np.argsort(-scores, kind='stable')
    m = 2 * max_num
    while True:
        prefix = order[:m]
        keep = _nms_cv2(boxes[prefix], scores[prefix], iou_threshold, max_num)
        if keep.size >= max_num or m >= order.size:
            return prefix[keep]
        m *= 4


def _nms_cv2(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
             max_num: int = -1) -> np.ndarray:
    """``cv2.dnn.NMSBoxes`` on xyxy float32 boxes (scores > 0); kept indices, at most
    ``max_num``."""
    xywh = np.empty(boxes.shape, dtype=np.float64)
    xywh[:, :2] = boxes[:, :2]
    xywh[:, 2:] = boxes[:, 2:] - boxes[:, :2]
    keep = np.asarray(cv2.dnn.NMSBoxes(xywh, scores, 0.0, float(iou_threshold)),
                      dtype=np.int64).reshape(-1)
    return keep[:max_num] if max_num > 0 else keep


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                iou_threshold: float, max_num: int = -1, backend: str = 'auto') -> np.ndarray:
    """Class-aware NMS (boxes of different labels never suppress each other), as mmdet's
    ``batched_nms``: kept indices sorted by score, descending."""
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    if labels.max() == labels.min():
        return nms(boxes, scores, iou_threshold, max_num, backend)
    offsets = labels.astype(np.float32) * (boxes.max() + np.float32(1))
    return nms(boxes + offsets[:, None], scores, iou_threshold, max_num, backend)


# ---------------------------------------------------------------------------- post-processor
def _unbatch(out: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """Drop the batch dimension (1) of a graph output."""
    if out is None:
        return None
    return out[0] if out.ndim >= 3 and out.shape[0] == 1 else out


class FacePostProcessor:
    """Numpy post-processing of the raw outputs of an exported RetinaFace model.

    Args:
        meta (dict): The model metadata (:func:`read_metadata`).
        score_thr, nms_thr, max_per_img, nms_pre: Override the config's ``test_cfg`` values
            (``None`` keeps them).
        nms_backend (str): ``'auto'`` (OpenCV up to :data:`AUTO_CV2_MAX_BOXES` candidates,
            else sparse), ``'sparse'`` (:func:`nms_sparse`), ``'cv2'`` or ``'numpy'``; all
            follow mmcv's NMS rule and keep the same boxes (see :func:`nms`).
    """

    def __init__(self,
                 meta: dict,
                 score_thr: Optional[float] = None,
                 nms_thr: Optional[float] = None,
                 max_per_img: Optional[int] = None,
                 nms_pre: Optional[int] = None,
                 nms_backend: str = 'auto') -> None:
        self.meta = meta
        self.nms_backend = nms_backend
        cfg = dict(meta['test_cfg'])
        for key, value in (('score_thr', score_thr), ('iou_threshold', nms_thr),
                           ('max_per_img', max_per_img), ('nms_pre', nms_pre)):
            if value is not None:
                cfg[key] = value
        self.test_cfg = cfg
        self.levels = meta['levels']
        self.coder = meta['bbox_coder']
        self.prior_coder = meta.get('prior_bbox_coder')  # cascade: stage 1's coder
        self.landmarks = meta.get('landmarks')
        self.decoded = meta['outputs'] == 'decoded'
        self.anchors = AnchorCache(self.levels)

    def _select(self, scores: np.ndarray, pad_shape: Tuple[int, int]):
        """Per level: indices (into all anchors), labels and scores above ``score_thr``, at
        most ``nms_pre`` per level (top-k)."""
        sizes = featmap_sizes(pad_shape, self.levels)
        counts = [fh * fw * len(lv['base_anchors']) for (fh, fw), lv in zip(sizes, self.levels)]
        if sum(counts) != scores.shape[0]:
            raise ValueError(f'the model output has {scores.shape[0]} anchors but an input of '
                             f'{tuple(pad_shape)} should give {sum(counts)} {counts}; is the '
                             'input padded like the metadata says?')
        thr = self.test_cfg.get('score_thr', 0.0)
        nms_pre = self.test_cfg.get('nms_pre', -1)
        if scores.shape[1] == 1:  # one class (faces): 1-D search, several times faster
            flat = scores.reshape(-1)
            rows = np.flatnonzero(flat > thr)  # level by level, anchors in order
            cols, kept = np.zeros(rows.size, dtype=np.int64), flat[rows]
        else:
            rows, cols = np.nonzero(scores > thr)
            kept = scores[rows, cols]
        if nms_pre > 0:
            bounds = np.searchsorted(rows, np.cumsum([0] + counts))
            if (np.diff(bounds) > nms_pre).any():  # top-k of the crowded levels only
                parts = []
                for lo, hi in zip(bounds[:-1], bounds[1:]):
                    if hi - lo > nms_pre:
                        parts.append(lo + np.argsort(-kept[lo:hi], kind='stable')[:nms_pre])
                    else:
                        parts.append(np.arange(lo, hi))
                sel = np.concatenate(parts)
                rows, cols, kept = rows[sel], cols[sel], kept[sel]
        return rows, cols, kept

    def __call__(self, outputs: Sequence[np.ndarray], img_meta: dict) -> Dict[str, np.ndarray]:
        """Detections of one image in original pixels.

        Args:
            outputs: the graph outputs of one image, in the order of :data:`DELTA_OUTPUTS`
                or :data:`DECODED_OUTPUTS` (batch dim 1 or none; ``None`` for an output the
                model does not have), then, for a cascade model in ``'deltas'`` mode, its
                :data:`PRIOR_OUTPUT`.
            img_meta: from :func:`preprocess`.

        Returns:
            dict: ``bboxes`` (n, 4), ``scores`` (n,), ``labels`` (n,) and, when the model
            predicts landmarks, ``keypoints`` (n, K, 2); float32, sorted by score.
        """
        outputs = (list(outputs) + [None] * 4)[:4]
        scores, box_out, kpt_out, prior_out = (_unbatch(o) for o in outputs)
        if self.prior_coder is not None and not self.decoded and prior_out is None:
            raise ValueError(f'a cascade model needs its {PRIOR_OUTPUT!r} output')
        if scores.ndim == 1:
            scores = scores[:, None]
        inds, labels, kept = self._select(scores, img_meta['pad_shape'])
        img_shape = img_meta['img_shape']
        anchors = None
        if self.decoded:
            bboxes = clip_boxes_(box_out[inds].astype(np.float32), img_shape)
        else:
            anchors = self.anchors(img_meta['pad_shape'])[inds]
            if self.prior_coder is not None:  # stage 2's priors: stage-1 boxes, not clipped
                anchors = decode_boxes(anchors, prior_out[inds], self.prior_coder)
            bboxes = decode_boxes(anchors, box_out[inds], self.coder, img_shape)
        sx, sy = (float(s) for s in img_meta['scale_factor'])
        bboxes = bboxes * np.asarray([1 / sx, 1 / sy, 1 / sx, 1 / sy], dtype=np.float32)
        final = np.arange(len(inds))  # candidates kept so far
        min_size = self.test_cfg.get('min_bbox_size', -1)
        if min_size is not None and min_size >= 0:
            valid = ((bboxes[:, 2] - bboxes[:, 0]) > min_size) & (
                (bboxes[:, 3] - bboxes[:, 1]) > min_size)
            if not valid.all():
                final = np.flatnonzero(valid)
                bboxes, kept, labels = bboxes[final], kept[final], labels[final]
        iou = self.test_cfg.get('iou_threshold')
        if iou is not None and bboxes.shape[0] > 0:
            max_per_img = self.test_cfg.get('max_per_img', -1)
            keep = batched_nms(bboxes, kept, labels, iou, max_per_img or -1, self.nms_backend)
            bboxes, kept, labels, final = bboxes[keep], kept[keep], labels[keep], final[keep]
        result = dict(
            bboxes=bboxes.astype(np.float32).reshape(-1, 4),
            scores=kept.astype(np.float32),
            labels=labels.astype(np.int64))
        if kpt_out is not None and (self.decoded or self.landmarks):
            # landmarks of the detections only (decoding is per anchor: the same values)
            rows = inds[final]
            if self.decoded:
                kpts = kpt_out[rows].astype(np.float32)
            else:
                kpts = decode_keypoints(anchors[final], kpt_out[rows],
                                        self.landmarks['variance'])
            result['keypoints'] = kpts / np.asarray([sx, sy], dtype=np.float32)
        return result


# ---------------------------------------------------------------------------- detector
class ONNXFaceDetector:
    """Face detection with an exported RetinaFace ``.onnx`` (FP32 or quantised) and numpy
    post-processing; needs nothing but the ``.onnx`` file.

    Args:
        onnx_path (str): Model written by ``tools/deployment/pytorch2onnx.py`` (or its INT8
            version from ``onnx_quantize.py``).
        score_thr (float, optional): Score threshold (default: the config's ``test_cfg``).
        nms_thr (float, optional): NMS IoU threshold (default: the config's).
        max_per_img (int, optional): Detections kept per image (default: the config's).
        nms_pre (int, optional): Candidates kept per level before NMS (default: the config's).
        num_threads (int, optional): ``intra_op_num_threads`` of ONNX Runtime (0 / None: all).
        providers (list, optional): ONNX Runtime execution providers (default: CPU).
        nms_backend (str): ``'auto'``, ``'sparse'``, ``'cv2'`` or ``'numpy'`` (see :func:`nms`).

    Example:
        >>> det = ONNXFaceDetector('retinaface_mnet025.onnx', score_thr=0.5)
        >>> out = det(cv2.imread('photo.jpg'))  # BGR uint8, or a path
        >>> out['bboxes'], out['scores'], out['keypoints']   # original pixels
    """

    def __init__(self,
                 onnx_path: str,
                 score_thr: Optional[float] = None,
                 nms_thr: Optional[float] = None,
                 max_per_img: Optional[int] = None,
                 nms_pre: Optional[int] = None,
                 num_threads: Optional[int] = None,
                 providers: Optional[list] = None,
                 nms_backend: str = 'auto') -> None:
        import onnxruntime as ort
        if not os.path.isfile(onnx_path):
            raise FileNotFoundError(f'ONNX model not found: {onnx_path}')
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads:
            opts.intra_op_num_threads = int(num_threads)
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            onnx_path, opts, providers=providers or ['CPUExecutionProvider'])
        self.meta = read_metadata(self.session)
        self.postprocess = FacePostProcessor(
            self.meta, score_thr=score_thr, nms_thr=nms_thr, max_per_img=max_per_img,
            nms_pre=nms_pre, nms_backend=nms_backend)
        self.input_name = self.session.get_inputs()[0].name
        names = DECODED_OUTPUTS if self.postprocess.decoded else DELTA_OUTPUTS
        if self.postprocess.prior_coder is not None and not self.postprocess.decoded:
            names = names + (PRIOR_OUTPUT, )
        available = [o.name for o in self.session.get_outputs()]
        if not all(n in available for n in names[:2] + names[3:]):
            raise ValueError(f'ONNX outputs {available} do not match the metadata ({names})')
        # outputs by position (None for a model without landmarks), as the post-processor
        # takes them
        self._slots = [n if n in available else None for n in names]
        self.output_names = [n for n in self._slots if n is not None]
        self._buffers: 'OrderedDict[tuple, np.ndarray]' = OrderedDict()
        self._scratch: dict = {}

    def preprocess(self, img: np.ndarray) -> Tuple[np.ndarray, dict]:
        """Network input (1, 3, Hp, Wp) and ``img_meta`` of one BGR image (buffers are reused
        per input size)."""
        pre = self.meta['preprocess']
        h, w = resized_size(img.shape[:2], pre.get('resize'))
        buf = self._buffers.get((h, w))
        blob, img_meta = preprocess(img, pre, out=buf, cache=self._scratch)
        if buf is None:
            self._buffers[(h, w)] = blob
            while len(self._buffers) > 4:
                self._buffers.popitem(last=False)
        return blob, img_meta

    def forward(self, blob: np.ndarray) -> List[np.ndarray]:
        """Raw graph outputs for a preprocessed input."""
        outs = dict(zip(self.output_names,
                        self.session.run(self.output_names, {self.input_name: blob})))
        return [outs[n] if n is not None else None for n in self._slots]

    def __call__(self, img: Union[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Detect faces in one image (BGR uint8 array or a path).

        Returns:
            dict: ``bboxes`` (n, 4) xyxy, ``scores`` (n,), ``labels`` (n,) and ``keypoints``
            (n, 5, 2), all in original-image pixels, sorted by score.
        """
        if isinstance(img, (str, os.PathLike)):
            path = os.fspath(img)
            if not os.path.isfile(path):
                raise FileNotFoundError(f'image not found: {path}')
            img = cv2.imread(path, cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f'cannot decode image {path}')
        blob, img_meta = self.preprocess(img)
        return self.postprocess(self.forward(blob), img_meta)
