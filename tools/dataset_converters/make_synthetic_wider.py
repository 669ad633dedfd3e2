"""Write a small synthetic face dataset in the WIDER FACE / RetinaFace file formats.

Usage::

    python tools/dataset_converters/make_synthetic_wider.py data/synthetic_wider \
        [--num-train 64] [--num-val 16] [--seed 0] [--num-vertices 0]

Each image is a textured background with drawn "faces": a skin-coloured ellipse inscribed in the
face box, two dark eyes, a nose and a mouth line drawn exactly at the five landmark positions
(left eye, right eye, nose, left and right mouth corners; "left" = smaller x). Face boxes are
integers (x, y, w, h); landmarks are multiples of 1/8 pixel (written exactly with 3 decimals and
drawn with cv2's sub-pixel ``shift=3``). Some faces are tiny, faces narrower than 10 px and some
others have no landmark annotation (-1), and some images have no face at all.

Layout written under OUT_DIR (the same as the real data, see configs/_base_/datasets)::

    WIDER_train/images/<event>/<name>.jpg      WIDER_val/images/<event>/<name>.jpg
    train/label.txt                            RetinaFace format, 20 numbers per face
    val/label.txt                              RetinaFace format, with landmarks too
                                               (``0 0 0 0`` for an image without faces)
    wider_face_split/wider_face_{train,val}_bbx_gt.txt   official text format
    wider_face_split/wider_face_{train,val}.mat          official .mat layout
    eval_ground_truth/wider_face_val.mat, wider_{easy,medium,hard}_val.mat
    {train,val}/vertices.npz                   only with --num-vertices V > 0

Difficulty keep lists (``gt_list``, 1-based, like the official files): hard = faces with
``min(w, h) >= 6``, medium >= 16, easy >= 32. No face is flagged invalid. With
``--num-vertices``, each face gets V points on a half-ellipsoid over its box (x, y in pixels, z
depth in pixels, negative towards the camera); faces without landmarks get NaN vertices.
Deterministic for a given ``--seed``.
"""
import argparse
import os
import os.path as osp
from typing import List

import cv2
import numpy as np

EVENTS = ('0--Parade', '1--Handshaking', '2--Demonstration')
# Landmark template as fractions of the face box (x, y).
TEMPLATE = np.array([[0.32, 0.42], [0.68, 0.42], [0.50, 0.60], [0.36, 0.78], [0.64, 0.78]])
SKIN_BGR = np.array([[180, 200, 240], [140, 170, 220], [110, 145, 200], [80, 110, 165],
                     [55, 80, 125]], dtype=np.float64)
NO_LANDMARK_BELOW = 10  # faces narrower than this have no landmark annotation
DIFFICULTY_MIN_SIDE = dict(easy=32, medium=16, hard=6)


def _q8(v):
    """Round to a multiple of 1/8 (exact in binary and in 3-decimal text)."""
    return np.round(np.asarray(v, dtype=np.float64) * 8) / 8


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    low = rng.uniform(40, 220, size=(4, 4, 3)).astype(np.float32)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 12, size=(h, w, 3)).astype(np.float32)
    for _ in range(int(rng.integers(3, 9))):
        color = tuple(float(c) for c in rng.uniform(0, 255, 3) * np.array([1.0, 0.8, 0.5]))
        x1, y1 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x2, y2 = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x1, y1), (x2, y2), color, int(rng.integers(1, 6)))
        else:
            cv2.line(img, (x1, y1), (x2, y2), color, int(rng.integers(1, 4)))
    return img


def _place_faces(rng, h: int, w: int, num: int) -> List[List[int]]:
    boxes: List[List[int]] = []
    max_side = max(8, int(0.55 * min(h, w)))
    for _ in range(num):
        for _attempt in range(40):
            if rng.random() < 0.3:
                fw = int(rng.integers(4, 12))
            else:
                fw = int(np.exp(rng.uniform(np.log(12), np.log(max_side))))
            fh = max(4, int(round(fw * rng.uniform(1.05, 1.35))))
            if fw >= w - 2 or fh >= h - 2:
                continue
            x = int(rng.integers(0, w - fw))
            y = int(rng.integers(0, h - fh))
            if all(x + fw + 2 <= bx or bx + bw + 2 <= x or y + fh + 2 <= by or by + bh + 2 <= y
                   for bx, by, bw, bh in boxes):
                boxes.append([x, y, fw, fh])
                break
    return boxes


def _landmarks(rng, box) -> np.ndarray:
    x, y, w, h = box
    pts = TEMPLATE.copy()
    yaw = rng.uniform(-0.08, 0.08)
    pts[:, 0] += yaw * np.array([1, 1, 1.6, 1, 1])
    pts += rng.uniform(-0.02, 0.02, size=pts.shape)
    return _q8(np.stack([x + pts[:, 0] * w, y + pts[:, 1] * h], axis=1))


def _vertex_grid(num: int) -> np.ndarray:
    """``num`` (u, v) points in the unit disc, deterministic, symmetric rows."""
    side = int(np.ceil(np.sqrt(num * 4 / np.pi))) + 2
    g = np.linspace(-0.9, 0.9, side)
    uu, vv = np.meshgrid(g, g)
    pts = np.stack([uu.ravel(), vv.ravel()], axis=1)
    pts = pts[(pts ** 2).sum(1) <= 0.81]
    while len(pts) < num:
        side += 1
        g = np.linspace(-0.9, 0.9, side)
        uu, vv = np.meshgrid(g, g)
        pts = np.stack([uu.ravel(), vv.ravel()], axis=1)
        pts = pts[(pts ** 2).sum(1) <= 0.81]
    return pts[np.linspace(0, len(pts) - 1, num).round().astype(int)]


def _vertices(box, grid: np.ndarray) -> np.ndarray:
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    depth = np.sqrt(np.clip(1 - (grid ** 2).sum(1), 0, None))
    return np.stack([cx + grid[:, 0] * w / 2, cy + grid[:, 1] * h / 2, -depth * w / 2],
                    axis=1).astype(np.float32)


def _draw_face(img: np.ndarray, rng, box, lmk: np.ndarray) -> None:
    x, y, w, h = box
    skin = SKIN_BGR[int(rng.integers(len(SKIN_BGR)))] + rng.uniform(-12, 12, 3)
    s = 8  # shift=3 -> 1/8 px

    def p(pt):
        return int(round(pt[0] * s)), int(round(pt[1] * s))

    center = p((x + w / 2, y + h / 2))
    axes = (int(round(w / 2 * s)), int(round(h / 2 * s)))
    cv2.ellipse(img, center, axes, 0, 0, 360, tuple(skin.tolist()), -1, cv2.LINE_AA, 3)
    eye_r = max(1, int(round(0.07 * w * s)))
    for k in (0, 1):
        cv2.circle(img, p(lmk[k]), eye_r, (30.0, 25.0, 20.0), -1, cv2.LINE_AA, 3)
    nose_r = max(1, int(round(0.045 * w * s)))
    cv2.circle(img, p(lmk[2]), nose_r, tuple((skin * 0.6).tolist()), -1, cv2.LINE_AA, 3)
    cv2.line(img, p(lmk[3]), p(lmk[4]), (40.0, 40.0, 150.0), max(1, int(round(0.05 * w))),
             cv2.LINE_AA, 3)


def make_split(rng, out_dir: str, split: str, num_images: int, num_vertices: int) -> list:
    """Draw ``num_images`` images; return records ``dict(event, name, h, w, faces)``."""
    records = []
    grid = _vertex_grid(num_vertices) if num_vertices else None
    for i in range(num_images):
        event = EVENTS[i % len(EVENTS)]
        name = f'{event.split("--")[1]}_synthetic_{split}_{i}'
        h, w = int(rng.integers(240, 481)), int(rng.integers(320, 641))
        img = _background(rng, h, w)
        num = 0 if i % 7 == 3 else int(rng.integers(1, 9))
        faces = []
        for box in _place_faces(rng, h, w, num):
            lmk = _landmarks(rng, box)
            _draw_face(img, rng, box, lmk)
            annotated = box[2] >= NO_LANDMARK_BELOW and rng.random() > 0.15
            face = dict(box=box, landmarks=lmk if annotated else None,
                        blur=round(float(rng.uniform(0.2, 0.95)), 2))
            if grid is not None:
                v = _vertices(box, grid)
                face['vertices'] = v if annotated else np.full_like(v, np.nan)
            faces.append(face)
        img_dir = osp.join(out_dir, f'WIDER_{split}', 'images', event)
        os.makedirs(img_dir, exist_ok=True)
        cv2.imwrite(osp.join(img_dir, name + '.jpg'), np.clip(img, 0, 255).astype(np.uint8),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        records.append(dict(event=event, name=name, h=h, w=w, faces=faces))
    records.sort(key=lambda r: (EVENTS.index(r['event']), r['name']))
    return records


def write_label_txt(path: str, records: list) -> None:
    """RetinaFace ``label.txt`` with landmarks (``0 0 0 0`` for images without faces)."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        for r in records:
            f.write(f'# {r["event"]}/{r["name"]}.jpg\n')
            if not r['faces']:
                f.write('0 0 0 0\n')
            for face in r['faces']:
                x, y, w, h = face['box']
                if face['landmarks'] is None:
                    lm = ' '.join(['-1.0'] * 15)
                else:
                    lm = ' '.join(f'{px:.3f} {py:.3f} 0.0' for px, py in face['landmarks'])
                f.write(f'{x} {y} {w} {h} {lm} {face["blur"]:.2f}\n')


def write_bbx_gt(path: str, records: list) -> None:
    """Official ``wider_face_*_bbx_gt.txt`` (blur quantised to the 0/1/2 label)."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        for r in records:
            f.write(f'{r["event"]}/{r["name"]}.jpg\n{len(r["faces"])}\n')
            if not r['faces']:
                f.write('0 0 0 0 0 0 0 0 0 0 \n')
            for face in r['faces']:
                x, y, w, h = face['box']
                f.write(f'{x} {y} {w} {h} {_blur_label(face["blur"])} 0 0 0 0 0 \n')


def _blur_label(blur: float) -> int:
    return 2 if blur < 0.35 else (1 if blur < 0.6 else 0)


def _cell(items) -> np.ndarray:
    arr = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        arr[i, 0] = item
    return arr


def build_mat(records: list, difficulty: str = None) -> dict:
    """The official ``.mat`` layout (cell arrays of per-event, per-image arrays)."""
    keys = ('blur_label_list', 'expression_label_list', 'illumination_label_list',
            'invalid_label_list', 'occlusion_label_list', 'pose_label_list')
    events = [e for e in EVENTS if any(r['event'] == e for r in records)]
    out = {k: [] for k in ('event_list', 'file_list', 'face_bbx_list', 'gt_list') + keys}
    for event in events:
        recs = [r for r in records if r['event'] == event]
        out['event_list'].append(np.array([event]))
        out['file_list'].append(_cell([np.array([r['name']]) for r in recs]))
        boxes, labels, gts = [], {k: [] for k in keys}, []
        for r in recs:
            if r['faces']:
                b = np.array([f['box'] for f in r['faces']], dtype=np.int32)
                blur = np.array([[_blur_label(f['blur'])] for f in r['faces']], dtype=np.uint8)
            else:  # like the official files: one zero row, empty keep list
                b = np.zeros((1, 4), dtype=np.int32)
                blur = np.zeros((1, 1), dtype=np.uint8)
            boxes.append(b)
            for k in keys:
                labels[k].append(blur if k == 'blur_label_list' else
                                 np.zeros((len(b), 1), dtype=np.uint8))
            if difficulty is not None:
                min_side = DIFFICULTY_MIN_SIDE[difficulty]
                keep = [j + 1 for j, f in enumerate(r['faces'])
                        if min(f['box'][2], f['box'][3]) >= min_side]
                gts.append(np.array(keep, dtype=np.uint8 if len(r['faces']) < 256 else np.uint16)
                           .reshape(-1, 1) if keep else
                           np.zeros((0, 0), dtype=np.uint8))
        out['face_bbx_list'].append(_cell(boxes))
        for k in keys:
            out[k].append(_cell(labels[k]))
        out['gt_list'].append(_cell(gts))
    mat = {k: _cell(v) for k, v in out.items() if k != 'gt_list'}
    if difficulty is not None:
        mat['gt_list'] = _cell(out['gt_list'])
    return mat


def write_vertices(path: str, records: list) -> None:
    """``.npz`` keyed by ``'event/name'``: (num_rows, V, 3), NaN = missing."""
    arrays = {}
    for r in records:
        if r['faces']:
            arrays[f'{r["event"]}/{r["name"]}'] = np.stack([f['vertices'] for f in r['faces']])
    np.savez(path, **arrays)


def make_dataset(out_dir: str, num_train: int = 64, num_val: int = 16, seed: int = 0,
                 num_vertices: int = 0) -> dict:
    """Write the whole synthetic dataset; return ``dict(train=records, val=records)``."""
    import scipy.io as sio
    rng = np.random.default_rng(seed)
    train = make_split(rng, out_dir, 'train', num_train, num_vertices)
    val = make_split(rng, out_dir, 'val', num_val, num_vertices)
    write_label_txt(osp.join(out_dir, 'train', 'label.txt'), train)
    write_label_txt(osp.join(out_dir, 'val', 'label.txt'), val)
    split_dir = osp.join(out_dir, 'wider_face_split')
    write_bbx_gt(osp.join(split_dir, 'wider_face_train_bbx_gt.txt'), train)
    write_bbx_gt(osp.join(split_dir, 'wider_face_val_bbx_gt.txt'), val)
    sio.savemat(osp.join(split_dir, 'wider_face_train.mat'), build_mat(train))
    sio.savemat(osp.join(split_dir, 'wider_face_val.mat'), build_mat(val))
    eval_dir = osp.join(out_dir, 'eval_ground_truth')
    os.makedirs(eval_dir, exist_ok=True)
    sio.savemat(osp.join(eval_dir, 'wider_face_val.mat'), build_mat(val))
    for difficulty in ('easy', 'medium', 'hard'):
        sio.savemat(osp.join(eval_dir, f'wider_{difficulty}_val.mat'), build_mat(val, difficulty))
    if num_vertices:
        write_vertices(osp.join(out_dir, 'train', 'vertices.npz'), train)
        write_vertices(osp.join(out_dir, 'val', 'vertices.npz'), val)
    return dict(train=train, val=val)


def parse_args():
    parser = argparse.ArgumentParser(description='Write a synthetic WIDER FACE dataset')
    parser.add_argument('out_dir', help='output folder, e.g. data/synthetic_wider')
    parser.add_argument('--num-train', type=int, default=64, help='train images')
    parser.add_argument('--num-val', type=int, default=16, help='val images')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--num-vertices', type=int, default=0,
                        help='dense 3D vertices per face (0 = none)')
    return parser.parse_args()


def main():
    args = parse_args()
    if args.num_train < 1 or args.num_val < 1 or args.num_vertices < 0:
        raise SystemExit('--num-train and --num-val must be >= 1, --num-vertices >= 0')
    recs = make_dataset(args.out_dir, args.num_train, args.num_val, args.seed, args.num_vertices)
    for split, records in recs.items():
        faces = sum(len(r['faces']) for r in records)
        lmk = sum(f['landmarks'] is not None for r in records for f in r['faces'])
        print(f'{split}: {len(records)} images, {faces} faces, {lmk} with landmarks')
    print(f'written to {args.out_dir}')


if __name__ == '__main__':
    main()
