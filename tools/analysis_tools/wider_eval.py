"""Evaluate a folder of WIDER FACE prediction files with the official algorithm.

    python tools/analysis_tools/wider_eval.py PRED_DIR GT_DIR [--pr-curve out.png]

``PRED_DIR`` holds ``<event>/<name>.txt`` files in the official submission format (from any
detector); ``GT_DIR`` holds ``wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat``.
By default only the images with a prediction file are evaluated (the counts of the others are
printed); ``--missing-as-empty`` evaluates every val image, a missing file as an image without
detections, which is what the official MATLAB code does.
"""
import argparse
import os.path as osp
import sys
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='WIDER FACE evaluation (official algorithm) of a prediction folder')
    parser.add_argument('pred_dir', help='folder with <event>/<name>.txt prediction files')
    parser.add_argument('gt_dir', help='folder with wider_face_val.mat and '
                        'wider_{easy,medium,hard}_val.mat')
    parser.add_argument('--pr-curve', help='save the PR curves of the three settings (PNG)')
    parser.add_argument('--iou-thr', type=float, default=0.5, help='IoU threshold (0.5)')
    parser.add_argument('--missing-as-empty', action='store_true',
                        help='evaluate all val images, missing files as empty (official)')
    parser.add_argument('--label', default=None, help='legend label of the PR curves')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from projects.retinaface.evaluation.functional import (
        SETTINGS,
        evaluate_wider,
        load_wider_gt,
        load_wider_preds,
        plot_wider_pr_curves,
    )
    t0 = time.perf_counter()
    gt = load_wider_gt(args.gt_dir)
    preds = load_wider_preds(args.pred_dir)
    t1 = time.perf_counter()
    res = evaluate_wider(preds, gt, iou_thr=args.iou_thr,
                         missing='empty' if args.missing_as_empty else 'skip')
    t2 = time.perf_counter()
    print(f'images evaluated: {res["num_images"]} of {len(gt)} '
          f'(without prediction file: {res["num_images_missing"]}'
          f'{", evaluated as empty" if args.missing_as_empty else ", not evaluated"}); '
          f'files not in the ground truth (ignored): {res["num_images_unknown"]}; '
          f'predictions: {res["num_predictions"]}')
    if res['num_images_unknown']:
        print(f'  e.g. {res["unknown_images"][:5]}')
    for s in SETTINGS:
        r = res[s]
        print(f'{s.capitalize():>6} Val AP: {r["ap"]:.4f}  '
              f'({r["num_faces"]} faces, {r["num_faces_missing"]} not evaluated)')
    print(f'(read in {t1 - t0:.2f} s, evaluated in {t2 - t1:.2f} s)')
    if args.pr_curve:
        label = args.label or osp.basename(osp.normpath(args.pred_dir))
        plot_wider_pr_curves(res, args.pr_curve, label=label)
        print(f'PR curves saved to {args.pr_curve}')
    return res


if __name__ == '__main__':
    main()
