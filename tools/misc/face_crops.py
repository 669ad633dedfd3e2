"""Detect faces and write face, head and aligned (ArcFace 112x112) crops plus a JSON index.

Example::

    python tools/misc/face_crops.py CONFIG CKPT photos/ crops/ --kind all --score-thr 0.5

Writes ``OUT_DIR/face/<name>_<i>.jpg``, ``OUT_DIR/head/<name>_<i>.jpg``,
``OUT_DIR/aligned/<name>_<i>.jpg`` (depending on ``--kind``) and ``OUT_DIR/index.json``: per
image its path and size, and per kept face (score >= ``--score-thr``) the score, box, landmarks,
crop boxes, crop files (relative to OUT_DIR) and, for aligned crops, the 2x3 matrix mapping
image pixels to crop pixels. In a folder, files that cannot be read as images (corrupt,
truncated) are skipped with a warning each and listed under ``skipped`` in the index; a single
unreadable input image is an error.
"""
import logging
import os
import os.path as osp
import sys
from argparse import ArgumentParser

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
KINDS = ('face', 'head', 'aligned')


def parse_args(argv=None):
    from mmengine.config import DictAction

    parser = ArgumentParser(description='Face / head / aligned face crops from detections')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('input', help='image file or folder of images (searched recursively)')
    parser.add_argument('out_dir', help='output folder')
    parser.add_argument('--kind', choices=KINDS + ('all', ), default='all', help='crops to write')
    parser.add_argument('--score-thr', type=float, default=0.5, help='minimum face score')
    parser.add_argument(
        '--device', default=None, help='device (default: cuda:0 if available, else cpu)')
    parser.add_argument(
        '--margin', type=float, default=0.0,
        help='face crops: margin on every side, relative to the box size')
    parser.add_argument('--square', action='store_true', help='face crops: square boxes')
    parser.add_argument(
        '--head-width', type=float, default=1.5, help='head crops: width / face width')
    parser.add_argument(
        '--head-top', type=float, default=0.6,
        help='head crops: extension above the face / face height')
    parser.add_argument(
        '--head-bottom', type=float, default=0.2,
        help='head crops: extension below the face / face height')
    parser.add_argument('--size', type=int, default=112, help='aligned crops: side in pixels')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override config settings')
    args = parser.parse_args(argv)
    if args.size < 1:
        parser.error('--size must be >= 1')
    return args


def list_images(path):
    """Image files of a file or folder (recursive, sorted) and their output name stems."""
    if osp.isfile(path):
        return [(path, osp.splitext(osp.basename(path))[0])]
    if not osp.isdir(path):
        raise FileNotFoundError(f'input not found: {path}')
    items = []
    for root, _, files in os.walk(path):
        for name in files:
            if osp.splitext(name)[1].lower() in IMG_EXTENSIONS:
                full = osp.join(root, name)
                stem = osp.splitext(osp.relpath(full, path))[0].replace(os.sep, '__')
                items.append((full, stem))
    if not items:
        raise FileNotFoundError(f'no images ({", ".join(IMG_EXTENSIONS)}) under {path}')
    return _unique_stems(sorted(items))


def _unique_stems(items):
    """Make output stems unique, so ``a.jpg`` and ``a.png`` never overwrite each other's crops:
    clashing stems get their extension (``a_jpg``, ``a_png``), then a counter if still needed."""
    counts = {}
    for _, stem in items:
        counts[stem] = counts.get(stem, 0) + 1
    out, used = [], set()
    for full, stem in items:
        if counts[stem] > 1:
            stem = f'{stem}_{osp.splitext(full)[1].lstrip(".").lower()}'
        unique, n = stem, 1
        while unique in used:
            unique, n = f'{stem}_{n}', n + 1
        used.add(unique)
        out.append((full, unique))
    return out


class UnreadableImageError(IOError):
    """An input file that is not a decodable image."""


def _round(values, ndigits=2):
    return [[round(float(v), ndigits) for v in row] for row in values]


def process_image(model, pipeline, img_path, stem, args, kinds):
    """Detect faces in one image, write its crops and return its index entry."""
    import mmcv
    import numpy as np
    from mmdet.apis import inference_detector

    from projects.retinaface.apis import align_face, crop_boxes, face_boxes, head_boxes

    img = mmcv.imread(img_path)  # BGR, as the test pipeline reads it
    if img is None:
        raise UnreadableImageError(f'cannot decode the image {img_path}')
    sample = inference_detector(model, img, test_pipeline=pipeline)
    pred = sample.pred_instances.cpu().numpy()
    keep = pred.scores >= args.score_thr
    bboxes = np.asarray(pred.bboxes, dtype=np.float64).reshape(-1, 4)[keep]
    scores = pred.scores[keep]
    keypoints = pred.keypoints[keep] if 'keypoints' in pred else None
    if 'aligned' in kinds and keypoints is None and args.kind == 'aligned':
        raise RuntimeError('aligned crops need landmarks, but the model predicts no keypoints')

    entry = dict(img_path=img_path, height=img.shape[0], width=img.shape[1], faces=[])
    boxes = dict(
        face=face_boxes(bboxes, img.shape[:2], margin=args.margin, square=args.square),
        head=head_boxes(
            bboxes, img.shape[:2], width_factor=args.head_width, top_factor=args.head_top,
            bottom_factor=args.head_bottom))
    crops = {kind: crop_boxes(img, boxes[kind]) for kind in ('face', 'head') if kind in kinds}
    for i in range(len(bboxes)):
        face = dict(index=i, score=round(float(scores[i]), 5), bbox=_round(bboxes[i:i + 1])[0])
        if keypoints is not None:
            face['keypoints'] = _round(keypoints[i])
        for kind, kind_crops in crops.items():
            info = dict(box=_round(boxes[kind][i:i + 1])[0], file=None)
            if kind_crops[i].size > 0:
                info['file'] = osp.join(kind, f'{stem}_{i}.jpg')
                mmcv.imwrite(kind_crops[i], osp.join(args.out_dir, info['file']))
            face[kind] = info
        if 'aligned' in kinds and keypoints is not None:
            crop, matrix = align_face(img, keypoints[i], image_size=args.size)
            rel = osp.join('aligned', f'{stem}_{i}.jpg')
            mmcv.imwrite(crop, osp.join(args.out_dir, rel))
            face['aligned'] = dict(file=rel, matrix=_round(matrix, 6))
        entry['faces'].append(face)
    return entry


def main(argv=None):
    args = parse_args(argv)
    import mmengine
    import torch
    from mmdet.apis import init_detector
    from mmengine.logging import print_log

    from projects.retinaface.apis import build_test_pipeline

    for path, what in ((args.config, 'config'), (args.checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} not found: {path}')
    images = list_images(args.input)
    kinds = KINDS if args.kind == 'all' else (args.kind, )
    device = args.device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    model = init_detector(
        args.config, args.checkpoint, device=device, cfg_options=args.cfg_options)
    pipeline = build_test_pipeline(model.cfg)

    index = dict(
        config=args.config,
        checkpoint=args.checkpoint,
        kind=args.kind,
        score_thr=args.score_thr,
        face=dict(margin=args.margin, square=args.square),
        head=dict(width_factor=args.head_width, top_factor=args.head_top,
                  bottom_factor=args.head_bottom),
        aligned=dict(size=args.size, template='arcface_112'),
        images=[],
        skipped=[])
    warned = False
    folder = osp.isdir(args.input)
    progress = mmengine.ProgressBar(len(images))
    for img_path, stem in images:
        try:
            entry = process_image(model, pipeline, img_path, stem, args, kinds)
        except UnreadableImageError as err:
            if not folder:
                raise
            print_log(f'skipped: {err}', level=logging.WARNING)
            index['skipped'].append(dict(img_path=img_path, reason=str(err)))
            progress.update()
            continue
        if ('aligned' in kinds and not warned and entry['faces']
                and 'keypoints' not in entry['faces'][0]):
            print_log('the model predicts no keypoints: aligned crops are skipped',
                      level=logging.WARNING)
            warned = True
        index['images'].append(entry)
        progress.update()
    os.makedirs(args.out_dir, exist_ok=True)
    mmengine.dump(index, osp.join(args.out_dir, 'index.json'))
    num_faces = sum(len(e['faces']) for e in index['images'])
    done = len(index['images'])
    print_log(f'{num_faces} faces from {done} images written to {args.out_dir}'
              + (f'; {len(index["skipped"])} of {len(images)} images could not be read and '
                 'were skipped (listed in index.json)' if index['skipped'] else ''),
              level=logging.WARNING if index['skipped'] else logging.INFO)
    return index


if __name__ == '__main__':
    main()
