#!/usr/bin/env python
"""Compare the accuracy of exported RetinaFace models (e.g. FP32 vs INT8) on real images.

Usage::

    python tools/deployment/eval_onnx.py FP32.onnx INT8.onnx \\
        [--data-root ../shared/data/widerface] [--num-train 100] [--num-calib 64] [--seed 0]

Two measures, each with the post-processing settings stored in the models (``test_cfg`` of the
config: score threshold 0.02, NMS 0.4 for the MobileNet-0.25 config):

- WIDER FACE AP (easy / medium / hard) with the official algorithm
  (``projects/retinaface/evaluation/functional``, ``missing='skip'``: only the images found
  under ``WIDER_val/images`` are evaluated);
- an all-faces VOC AP at IoU 0.5 on ``--num-train`` WIDER **train** images (ground truth from
  ``retinaface_gt/train/label.txt``, every face counts): the last images of the seeded shuffle of
  ``onnx_quantize.split_images`` whose first ``--num-calib`` images are the calibration set
  (with the same ``--seed``); images listed in an INT8 model's calibration metadata are also
  left out, so no calibration image is evaluated.

Prints a markdown table (AP in percent) with the difference of every model to the first.
"""
import argparse
import json
import os.path as osp
import sys
from typing import Dict, List, Sequence

import cv2
import numpy as np

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
for _p in (REPO_ROOT, osp.dirname(osp.abspath(__file__))):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from onnx_quantize import list_images, onnx_inference, split_images  # noqa: E402


def parse_label_txt(path: str) -> Dict[str, np.ndarray]:
    """``{'event/name.jpg': (n, 4) xyxy}`` from a RetinaFace ``label.txt`` (``# path`` lines,
    then ``x y w h ...`` per face)."""
    boxes: Dict[str, List[List[float]]] = {}
    current = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line.startswith('#'):
                current = line[1:].strip()
                boxes[current] = []
            elif current is not None:
                x, y, w, h = (float(v) for v in line.split()[:4])
                boxes[current].append([x, y, x + w, y + h])
    return {k: np.asarray(v, np.float64).reshape(-1, 4) for k, v in boxes.items()}


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (continuous coordinates) between (n, 4) and (m, 4) xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def voc_ap_all_faces(preds: Dict[str, tuple], gts: Dict[str, np.ndarray],
                     iou_thr: float = 0.5) -> float:
    """VOC all-point AP over all images: detections sorted by score (all images together),
    each matched to the unmatched ground-truth face of highest IoU ``>= iou_thr`` (otherwise a
    false positive); recall over every ground-truth face.

    Args:
        preds: ``{key: (boxes (n, 4) xyxy, scores (n,))}``.
        gts: ``{key: (m, 4) xyxy}`` (keys of ``preds`` must be in it).
    """
    from projects.retinaface.evaluation.functional import voc_ap
    num_gt = sum(gts[k].shape[0] for k in preds)
    if num_gt == 0:
        raise ValueError('no ground-truth faces in the evaluated images')
    records = []  # (score, image key, det index)
    for key, (_, scores) in preds.items():
        records += [(float(s), key, i) for i, s in enumerate(scores)]
    records.sort(key=lambda r: -r[0])
    ious = {k: iou_matrix(np.asarray(b, np.float64), gts[k]) if gts[k].size else None
            for k, (b, _) in preds.items()}
    used = {k: np.zeros(gts[k].shape[0], bool) for k in preds}
    tp = np.zeros(len(records))
    for r, (_, key, i) in enumerate(records):
        o = ious[key]
        if o is None:
            continue
        cand = np.where(used[key], -1.0, o[i])
        j = int(cand.argmax())
        if cand[j] >= iou_thr:
            used[key][j] = True
            tp[r] = 1
    ctp = np.cumsum(tp)
    recall = ctp / num_gt
    precision = ctp / np.arange(1, len(records) + 1)
    return voc_ap(recall, precision)


def detect_all(detector, images: Sequence[str], root: str, label: str = '') -> Dict[str, dict]:
    """Detections of every image, keyed by the path relative to ``root``; progress every 50
    images on stderr."""
    out = {}
    for k, path in enumerate(images, 1):
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f'cannot decode image {path}')
        out[osp.relpath(path, root)] = detector(img)
        if k % 50 == 0 or k == len(images):
            print(f'{label}: {k}/{len(images)} images', file=sys.stderr, flush=True)
    return out


def wider_val_ap(results: Dict[str, dict], gt) -> Dict[str, float]:
    from projects.retinaface.evaluation.functional import evaluate_wider
    preds = {}
    for rel, det in results.items():
        key = osp.splitext(rel)[0].replace(osp.sep, '/')
        b = det['bboxes'].astype(np.float64)
        preds[key] = np.column_stack([b[:, :2], b[:, 2:] - b[:, :2], det['scores']])
    res = evaluate_wider(preds, gt, missing='skip')
    return {s: 100 * res[s]['ap'] for s in ('easy', 'medium', 'hard')}


def calibration_list(onnx_path: str) -> List[str]:
    import onnx
    props = {p.key: p.value for p in onnx.load(onnx_path).metadata_props}
    return json.loads(props.get('retinaface.calibration_images', '[]'))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='Accuracy of exported RetinaFace models')
    parser.add_argument('models', nargs='+', help='.onnx files (the first is the baseline)')
    parser.add_argument('--data-root', default=osp.join(REPO_ROOT, '..', 'shared', 'data',
                                                         'widerface'))
    parser.add_argument('--num-train', type=int, default=100,
                        help='WIDER train images for the all-faces AP (0: skip)')
    parser.add_argument('--num-calib', type=int, default=64,
                        help='calibration images at the start of the shuffle (as in '
                        'onnx_quantize.py); the evaluated images are the last --num-train, '
                        'so this only checks that both sets fit')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=0, help='ONNX Runtime threads (0: all)')
    args = parser.parse_args(argv)
    from projects.retinaface.evaluation.functional import load_wider_gt

    root = args.data_root
    val_dir = osp.join(root, 'WIDER_val', 'images')
    train_dir = osp.join(root, 'WIDER_train', 'images')
    val_images = list_images(val_dir)
    gt = load_wider_gt(osp.join(root, 'eval_ground_truth'))
    train_images, train_gt = [], {}
    if args.num_train > 0:
        all_train = list_images(train_dir)
        _, train_images = split_images(all_train, args.num_calib, args.num_train, args.seed)
        excluded = set()
        for m in args.models:
            excluded |= {osp.normpath(osp.join(train_dir, p)) for p in calibration_list(m)}
        train_images = [p for p in train_images if osp.normpath(p) not in excluded]
        train_gt = {k: v for k, v in parse_label_txt(
            osp.join(root, 'retinaface_gt', 'train', 'label.txt')).items()}
    rows = []
    for m in args.models:
        det = onnx_inference.ONNXFaceDetector(m, num_threads=args.threads or None)
        ap = wider_val_ap(detect_all(det, val_images, val_dir, f'{osp.basename(m)} val'), gt)
        row = dict(model=osp.basename(m), **ap)
        if train_images:
            res = detect_all(det, train_images, train_dir, f'{osp.basename(m)} train')
            preds = {k.replace(osp.sep, '/'): (d['bboxes'], d['scores']) for k, d in res.items()}
            row['train'] = 100 * voc_ap_all_faces(preds, train_gt)
        rows.append(row)
    cols = ['easy', 'medium', 'hard'] + (['train'] if train_images else [])
    n_faces = sum(train_gt[osp.relpath(p, train_dir).replace(osp.sep, '/')].shape[0]
                  for p in train_images)
    print(f'WIDER val AP: {len(val_images)} val images (official algorithm); train: all-faces '
          f'VOC AP@0.5 on {len(train_images)} train images ({n_faces} faces), none used for '
          'calibration')
    print('| model | ' + ' | '.join(cols) + ' |')
    print('|' + ' --- |' * (len(cols) + 1))
    for r in rows:
        cells = [f'{r[c]:.2f} ({r[c] - rows[0][c]:+.2f})' if r is not rows[0] else f'{r[c]:.2f}'
                 for c in cols]
        print(f'| {r["model"]} | ' + ' | '.join(cells) + ' |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
