"""The user-level commands chained together, as subprocesses started in another directory.

Synthetic WIDER-format data -> ``tools/train.py configs/retinaface_mnet025_synthetic.py`` (160
iterations on 8 images, about 40 s on a free CPU, validation at the end) -> ``tools/test.py``
with ``--out`` and ``--show-dir`` -> ``tools/test.py --tta`` ->
``tools/analysis_tools/browse_dataset.py``. The metrics must be printed, parse, and count exactly
the faces the generator wrote; the short training must lower the loss and find faces (AP well
above chance, landmarks matched); predictions keep landmarks aligned with their boxes.

Data paths are overridden both ways the quick start documents: the explicit ``--cfg-options``
keys (train) and the ``SYNTHETIC_WIDER_ROOT`` environment variable (test, TTA, browse).
"""
import os
import pickle
import re
import subprocess

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import PYTHON, REPO_ROOT
from tests.test_integration import load_tool

CONFIG = str(REPO_ROOT / 'configs' / 'retinaface_mnet025_synthetic.py')
TRAIN = str(REPO_ROOT / 'tools' / 'train.py')
TEST = str(REPO_ROOT / 'tools' / 'test.py')
BROWSE = str(REPO_ROOT / 'tools' / 'analysis_tools' / 'browse_dataset.py')
NUM_TRAIN, NUM_VAL = 8, 4
EPOCHS = 80  # x 2 iterations (7 images with faces, batch 4)
MIN_SIDE = dict(easy=32, medium=16, hard=6)  # the generator's difficulty rule


def data_root_options(root):
    """The explicit --cfg-options keys that move every data path of the config to ``root``."""
    root = str(root).rstrip('/') + '/'
    return [
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.0.gt_dir={root}eval_ground_truth/',
        f'test_evaluator.0.gt_dir={root}eval_ground_truth/',
    ]


def run(args, cwd, data_root=None):
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'SYNTHETIC_WIDER_ROOT')}
    env['OMP_NUM_THREADS'] = '1'  # 2 shared cores: one intra-op thread, no spinning
    if data_root is not None:
        env['SYNTHETIC_WIDER_ROOT'] = str(data_root)
    proc = subprocess.run([PYTHON, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return out


def parse_metrics(log):
    """WIDER AP table rows and the landmark numbers printed by tools/test.py."""
    rows = {
        m.group(1): (float(m.group(2)), int(m.group(3)), int(m.group(4)))
        for m in re.finditer(r'\|\s*(easy|medium|hard)\s*\|\s*([0-9.]+)\s*\|\s*(\d+)\s*\|'
                             r'\s*(\d+)\s*\|', log)
    }
    summary = re.findall(r'Epoch\(test\).*', log)
    assert summary, log[-3000:]
    values = dict(re.findall(r'([\w/]+): (-?[0-9.]+|nan)', summary[-1]))
    return rows, values


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic_wider')
    make_dataset = load_tool('tools/dataset_converters/make_synthetic_wider.py').make_dataset
    records = make_dataset(str(root), num_train=NUM_TRAIN, num_val=NUM_VAL, seed=0)
    cwd = tmp_path_factory.mktemp('user_cwd')
    work_dir = cwd / 'work'
    log = run([TRAIN, CONFIG, '--work-dir', work_dir, '--cfg-options',
               *data_root_options(root), f'train_cfg.max_epochs={EPOCHS}',
               f'param_scheduler.1.end={EPOCHS}', 'train_dataloader.batch_size=4',
               'default_hooks.logger.interval=1', 'log_processor.window_size=1'], cwd)
    return dict(root=root, records=records, cwd=cwd, work_dir=work_dir, log=log,
                ckpt=work_dir / f'epoch_{EPOCHS}.pth')


def expected_counts(records):
    faces = [f for r in records['val'] for f in r['faces']]
    per_setting = {k: sum(min(f['box'][2:]) >= s for f in faces) for k, s in MIN_SIDE.items()}
    annotated = sum(f['landmarks'] is not None for f in faces)
    return per_setting, annotated


def check_predictions(results, records):
    """One result per val image; keypoints (N, 5, 2) aligned with their own boxes.

    Alignment: the centroid of a prediction's five landmarks lies inside its own box grown by
    half its size on every side for most predictions (landmarks and boxes are decoded from the
    same anchor; low-score predictions of a barely trained model may stray), and for far fewer
    when the landmarks are paired with other boxes of the same image (a shuffled order).
    """
    val = {f'{r["event"]}/{r["name"]}': r for r in records['val']}
    assert sorted(r['img_id'] for r in results) == sorted(val)
    inside, inside_shuffled, total = 0, 0, 0
    for res in results:
        rec = val[res['img_id']]
        assert tuple(res['ori_shape']) == (rec['h'], rec['w'])
        pred = res['pred_instances']
        boxes, kpts, scores = pred['bboxes'], pred['keypoints'], pred['scores']
        n = len(boxes)
        assert boxes.shape == (n, 4) and scores.shape == (n, ) and kpts.shape == (n, 5, 2)
        assert torch.isfinite(kpts).all() and torch.isfinite(boxes).all()
        if n == 0:
            continue
        total += n
        wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1)
        for centroids, counter in ((kpts.mean(1), 'own'), (kpts.mean(1).roll(n // 2, 0), '')):
            rel = (centroids - boxes[:, :2]) / wh  # (n, 2), box = [0, 1]
            hits = int(((rel > -0.5) & (rel < 1.5)).all(1).sum())
            if counter == 'own':
                inside += hits
            else:
                inside_shuffled += hits
        # boxes in original-image pixels (rescaled): centres inside the image
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        assert (cx > -1).all() and (cx < rec['w'] + 1).all()
        assert (cy > -1).all() and (cy < rec['h'] + 1).all()
    assert total > 0
    assert inside >= 0.8 * total and inside >= 3 * inside_shuffled, (inside, inside_shuffled,
                                                                     total)
    return total


def test_train_runs_and_validates(trained):
    log = trained['log']
    assert trained['ckpt'].is_file()
    assert f'Epoch(train) [{EPOCHS}][2/2]' in log  # 7 images with faces, batch 4
    assert f'Epoch(val) [{EPOCHS}][4/4]' in log
    ckpt = torch.load(trained['ckpt'], map_location='cpu', weights_only=True)
    assert ckpt['meta']['epoch'] == EPOCHS and ckpt['meta']['iter'] == 2 * EPOCHS
    assert any(k.startswith('bbox_head.') for k in ckpt['state_dict'])
    # every iteration logged: the loss (and each of its terms) goes down
    # (observed last/first ratios: loss 0.37, loss_cls 0.77, loss_bbox 0.41, loss_kpt 0.29)
    max_ratio = dict(loss=0.6, loss_cls=0.85, loss_bbox=0.8, loss_kpt=0.6)
    for term, ratio in max_ratio.items():
        values = [float(v) for v in re.findall(rf'  {term}: ([0-9.]+)', log)]
        assert len(values) == 2 * EPOCHS, term
        first, last = np.mean(values[:4]), np.mean(values[-4:])
        assert last < ratio * first, (term, first, last)


def test_test_prints_metrics_dumps_and_draws(trained, tmp_path):
    out_pkl = tmp_path / 'results.pkl'
    show_dir = 'vis'
    log = run([TEST, CONFIG, trained['ckpt'], '--work-dir', tmp_path / 'test_wd', '--out',
               out_pkl, '--show-dir', show_dir, '--cfg-options',
               'test_dataloader.num_workers=0'], tmp_path, data_root=trained['root'])
    rows, values = parse_metrics(log)
    per_setting, annotated = expected_counts(trained['records'])
    assert set(rows) == {'easy', 'medium', 'hard'}
    for setting, (ap, evaluated, not_evaluated) in rows.items():
        assert 0.0 <= ap <= 1.0
        assert evaluated == per_setting[setting] and not_evaluated == 0
        assert float(values[f'wider_face/{setting}']) == pytest.approx(ap, abs=1e-4)
    # 160 iterations from scratch already find faces (0.30 easy AP here; an untrained model
    # scores 0.00, and so did 80 iterations of the config's AdamW)
    assert rows['easy'][0] > 0.1
    nme = float(values['landmark/nme'])
    matched = int(values['landmark/num_faces'])
    assert matched + int(values['landmark/num_unmatched']) == annotated
    assert matched > 0 and 0.0 < nme < 0.5

    with open(out_pkl, 'rb') as f:
        results = pickle.load(f)
    check_predictions(results, trained['records'])

    # --show-dir: one drawing per val image under the work dir, ground truth and prediction
    # side by side at the original size (mmdet's visualizer layout)
    drawn = sorted((tmp_path / 'test_wd').rglob(f'{show_dir}/**/*.jpg'))
    assert len(drawn) == NUM_VAL
    sizes = {(r['h'], 2 * r['w']) for r in trained['records']['val']}
    for path in drawn:
        img = cv2.imread(str(path))
        assert img is not None and img.shape[:2] in sizes and img.std() > 0


def test_test_with_tta_keeps_landmarks(trained, tmp_path):
    out_pkl = tmp_path / 'tta.pkl'
    log = run([TEST, CONFIG, trained['ckpt'], '--tta', '--work-dir', tmp_path / 'tta_wd',
               '--out', out_pkl, '--cfg-options', 'test_dataloader.num_workers=0'], tmp_path,
              data_root=trained['root'])
    rows, values = parse_metrics(log)
    assert set(rows) == {'easy', 'medium', 'hard'}
    assert 'landmark/nme' in values
    with open(out_pkl, 'rb') as f:
        results = pickle.load(f)
    check_predictions(results, trained['records'])


def test_browse_dataset(trained, tmp_path):
    out_dir = tmp_path / 'browse'
    run([BROWSE, CONFIG, '--output-dir', out_dir, '--not-show', '--max-images', '3'], tmp_path,
        data_root=trained['root'])
    files = sorted(p for p in out_dir.rglob('*') if p.is_file())
    assert len(files) == 3
    for path in files:
        img = cv2.imread(str(path))
        # training view after the pipeline: 320x320 (square crop, resize)
        assert img is not None and img.shape == (320, 320, 3) and np.std(img) > 0


def test_test_survives_a_truncated_image(trained, tmp_path):
    """A val image cut short (an interrupted download: its header passes the dataset's check,
    its data does not decode) neither stops ``tools/test.py`` nor disappears: it is named in
    warnings, gets an empty prediction, and its faces count as missed."""
    import shutil
    root = tmp_path / 'data'
    shutil.copytree(trained['root'], root)
    rec = max(trained['records']['val'], key=lambda r: len(r['faces']))
    path = root / 'WIDER_val' / 'images' / rec['event'] / f'{rec["name"]}.jpg'
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    out_pkl = tmp_path / 'results.pkl'
    log = run([TEST, CONFIG, trained['ckpt'], '--work-dir', tmp_path / 'wd', '--out', out_pkl,
               '--show-dir', 'vis', '--cfg-options', 'test_dataloader.num_workers=0'], tmp_path,
              data_root=root)
    key = f'{rec["event"]}/{rec["name"]}'
    assert f'cannot load image {path} (the file cannot be decoded); evaluated with no ' \
           'detections' in log
    assert f"1 image(s) could not be read and were evaluated with no detections " \
           f"(their faces count as missed): ['{key}']" in log
    assert 'nothing drawn for' in log
    rows, _ = parse_metrics(log)
    per_setting, _ = expected_counts(trained['records'])
    for setting, (_, evaluated, not_evaluated) in rows.items():
        assert evaluated == per_setting[setting] and not_evaluated == 0
    with open(out_pkl, 'rb') as f:
        results = pickle.load(f)
    assert sorted(r['img_id'] for r in results) == sorted(
        f'{r["event"]}/{r["name"]}' for r in trained['records']['val'])
    broken = next(r for r in results if r['img_id'] == key)
    assert broken['img_unreadable'] is True and tuple(broken['ori_shape']) == (rec['h'], rec['w'])
    assert broken['pred_instances']['bboxes'].shape == (0, 4)
    assert broken['pred_instances']['keypoints'].shape == (0, 5, 2)
    others = [r for r in results if r['img_id'] != key]
    assert sum(len(r['pred_instances']['bboxes']) for r in others) > 0
    drawn = sorted((tmp_path / 'wd').rglob('vis/**/*.jpg'))
    assert len(drawn) == NUM_VAL - 1
    # the same with test-time augmentation: every view of the placeholder predicts nothing
    log = run([TEST, CONFIG, trained['ckpt'], '--tta', '--work-dir', tmp_path / 'wd_tta', '--out',
               tmp_path / 'tta.pkl', '--cfg-options', 'test_dataloader.num_workers=0'], tmp_path,
              data_root=root)
    assert f"could not be read and were evaluated with no detections (their faces count as " \
           f"missed): ['{key}']" in log
    with open(tmp_path / 'tta.pkl', 'rb') as f:
        results = pickle.load(f)
    assert len(results) == NUM_VAL
    broken = next(r for r in results if r['img_id'] == key)
    assert len(broken['pred_instances']['bboxes']) == 0
    assert broken['pred_instances']['keypoints'].shape == (0, 5, 2)
