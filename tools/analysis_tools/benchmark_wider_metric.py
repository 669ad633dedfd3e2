"""Time the WIDER FACE evaluation on the full val ground truth with synthetic predictions.

Predictions: every ground-truth face jittered (a few dropped, a few duplicated) plus random
false positives, several hundred thousand boxes in all. Prints the three APs and the median
evaluation time over several runs (the official-format files are not involved).

    python tools/analysis_tools/benchmark_wider_metric.py [--gt-dir DIR] [--fp-per-image 100]
"""
import argparse
import os.path as osp
import sys
import time

import numpy as np

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

DEFAULT_GT = osp.join(REPO_ROOT, '..', 'shared', 'data', 'widerface', 'eval_ground_truth')


def synthetic_predictions(gt, fp_per_image=100, seed=0):
    """Jittered ground truth plus random boxes, ``{'event/name': (n, 5) x y w h score}``."""
    rng = np.random.default_rng(seed)
    preds = {}
    for key, boxes in zip(gt.image_keys, gt.boxes):
        n = boxes.shape[0]
        keep = rng.random(n) > 0.1
        tp = boxes[keep].copy()
        size = np.maximum(tp[:, 2:4], 1)
        tp[:, :2] += rng.normal(0, 0.08, (tp.shape[0], 2)) * size
        tp[:, 2:4] = size * np.exp(rng.normal(0, 0.08, (tp.shape[0], 2)))
        dup = tp[rng.random(tp.shape[0]) < 0.1]
        tp = np.concatenate([tp, dup])
        tp_scores = np.clip(rng.normal(0.8, 0.15, tp.shape[0]), 0.02, 1)
        n_fp = rng.poisson(fp_per_image)
        wh = rng.uniform(4, 200, (n_fp, 2))
        xy = rng.uniform(0, 1000, (n_fp, 2))
        fp_scores = np.clip(rng.normal(0.3, 0.2, n_fp), 0.02, 1)
        dets = np.concatenate([
            np.column_stack([tp, tp_scores]),
            np.column_stack([xy, wh, fp_scores])
        ])
        preds[key] = dets[rng.permutation(dets.shape[0])]
    return preds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--gt-dir', default=DEFAULT_GT,
                        help='folder with wider_face_val.mat and wider_{easy,medium,hard}_val.mat')
    parser.add_argument('--fp-per-image', type=int, default=100,
                        help='mean number of random false positives per image')
    parser.add_argument('--runs', type=int, default=5, help='timed runs (median reported)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()

    from projects.retinaface.evaluation.functional import evaluate_wider, load_wider_gt
    if not osp.isfile(osp.join(args.gt_dir, 'wider_face_val.mat')):
        print(f'SKIP: WIDER FACE evaluation ground truth not found in {args.gt_dir} '
              '(needs wider_face_val.mat and wider_{easy,medium,hard}_val.mat)')
        return 0
    t0 = time.perf_counter()
    gt = load_wider_gt(args.gt_dir)
    t_gt = time.perf_counter() - t0
    preds = synthetic_predictions(gt, args.fp_per_image, args.seed)
    n_pred = sum(p.shape[0] for p in preds.values())
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        res = evaluate_wider(preds, gt)
        times.append(time.perf_counter() - t0)
    print(f'ground truth: {len(gt)} images, {gt.face_offsets[-1]} faces '
          f'(loaded in {t_gt:.2f} s)')
    print(f'predictions: {n_pred} boxes on {len(preds)} images')
    for s in ('easy', 'medium', 'hard'):
        print(f'{s:>6} AP: {res[s]["ap"]:.4f}  ({res[s]["num_faces"]} faces)')
    print(f'evaluation time: median {np.median(times):.3f} s over {args.runs} runs '
          f'(min {min(times):.3f} s, max {max(times):.3f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
