"""tools/dataset_converters/make_synthetic_wider.py and tools/analysis_tools/browse_dataset.py."""
import os
import os.path as osp
import subprocess

import cv2
import numpy as np
import pytest
import scipy.io as sio
from mmengine.registry import init_default_scope

from projects.retinaface.datasets import WIDERFaceDataset
from projects.retinaface.datasets.wider_face import (
    parse_official_bbx_gt,
    parse_retinaface_label,
    parse_wider_mat,
)
from tests.helpers import PYTHON, REPO_ROOT, load_script, shared_path

load_tool = load_script


synth = load_tool('tools/dataset_converters/make_synthetic_wider.py')


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic_wider')
    records = synth.make_dataset(str(root), num_train=14, num_val=8, seed=3, num_vertices=6)
    return str(root), records


def test_cli_is_deterministic(tmp_path):
    outs = []
    for name, seed in (('a', 5), ('b', 5), ('c', 6)):
        out = tmp_path / name
        proc = subprocess.run([PYTHON, str(REPO_ROOT / synth.__file__), str(out), '--num-train',
                               '3', '--num-val', '2', '--seed', str(seed)],
                              capture_output=True, text=True, cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        assert 'train: 3 images' in proc.stdout
        outs.append(out)
    a, b, c = [(o / 'train' / 'label.txt').read_bytes() for o in outs]
    assert a == b and a != c
    first = sorted(os.listdir(outs[0] / 'WIDER_train' / 'images' / '0--Parade'))[0]
    jpg = [(o / 'WIDER_train' / 'images' / '0--Parade' / first) for o in outs[:2]]
    assert jpg[0].read_bytes() == jpg[1].read_bytes()


def test_dataset_reads_back_exactly_what_was_drawn(synthetic):
    root, records = synthetic
    for split in ('train', 'val'):
        recs = records[split]
        ds = WIDERFaceDataset(data_root=root, ann_file=f'{split}/label.txt',
                              data_prefix=dict(img=f'WIDER_{split}/images/'),
                              vertices_file=f'{split}/vertices.npz', test_mode=True)
        assert len(ds) == len(recs)
        infos = {ds.get_data_info(i)['img_id']: ds.get_data_info(i) for i in range(len(ds))}
        n_lmk = n_empty = n_tiny = 0
        for r in recs:
            info = infos[f'{r["event"]}/{r["name"]}']
            assert (info['height'], info['width']) == (r['h'], r['w'])
            assert len(info['instances']) == len(r['faces'])
            n_empty += not r['faces']
            for inst, face in zip(info['instances'], r['faces']):
                x, y, w, h = face['box']
                assert inst['bbox'] == [x, y, x + w, y + h]
                n_tiny += w < 10
                if face['landmarks'] is None:
                    assert inst['keypoints_valid'] == [0] * 5
                    assert inst['vertices_valid'] == 0
                else:
                    n_lmk += 1
                    assert inst['keypoints_valid'] == [1] * 5
                    assert inst['keypoints'] == face['landmarks'].tolist()  # exact
                    assert inst['vertices_valid'] == 1
                    np.testing.assert_array_equal(np.asarray(inst['vertices'], np.float32),
                                                  face['vertices'])
        faces = sum(len(r['faces']) for r in recs)
        assert 0 < n_lmk < faces and n_empty > 0 and n_tiny > 0


def test_features_are_drawn_at_the_landmarks(synthetic):
    root, records = synthetic
    checked = 0
    for r in records['train']:
        img = cv2.imread(osp.join(root, 'WIDER_train', 'images', r['event'], r['name'] + '.jpg'))
        for face in r['faces']:
            if face['landmarks'] is None or face['box'][2] < 40:
                continue
            x, y, w, h = face['box']
            for px, py in face['landmarks'][:2]:  # eyes are dark discs centred there
                assert img[int(round(py)), int(round(px))].sum() < 200
            # the box centre column between the eyes is skin (bright), not an eye
            mid = (face['landmarks'][0] + face['landmarks'][1]) / 2
            assert img[int(round(mid[1])), int(round(mid[0]))].sum() > 200
            checked += 1
    assert checked > 0


def test_official_formats_agree_and_mat_layout(synthetic):
    root, records = synthetic
    txt = parse_retinaface_label(osp.join(root, 'val', 'label.txt'))
    gt = parse_official_bbx_gt(osp.join(root, 'wider_face_split', 'wider_face_val_bbx_gt.txt'))
    mat = parse_wider_mat(osp.join(root, 'eval_ground_truth', 'wider_face_val.mat'))
    assert [i['path'] for i in txt] == [i['path'] for i in gt] == [i['path'] for i in mat]
    for a, b, c in zip(txt, gt, mat):
        assert [r['xywh'] for r in a['rows']] == [r['xywh'] for r in b['rows']] == \
            [r['xywh'] for r in c['rows']]
    m = sio.loadmat(osp.join(root, 'eval_ground_truth', 'wider_face_val.mat'))
    hard = sio.loadmat(osp.join(root, 'eval_ground_truth', 'wider_hard_val.mat'))
    keys = {'event_list', 'file_list', 'face_bbx_list', 'blur_label_list',
            'expression_label_list', 'illumination_label_list', 'invalid_label_list',
            'occlusion_label_list', 'pose_label_list'}
    assert {k for k in m if not k.startswith('__')} == keys
    assert {k for k in hard if not k.startswith('__')} == keys | {'gt_list'}
    # the official reader's access pattern
    faces_by_key = {f'{r["event"]}/{r["name"]}': r['faces'] for r in records['val']}
    for difficulty in ('easy', 'medium', 'hard'):
        d = sio.loadmat(osp.join(root, 'eval_ground_truth', f'wider_{difficulty}_val.mat'))
        for e in range(len(d['event_list'])):
            event = str(d['event_list'][e][0][0])
            files, boxes, gts = d['file_list'][e][0], d['face_bbx_list'][e][0], \
                d['gt_list'][e][0]
            for j in range(len(files)):
                name = str(files[j][0][0])
                b = boxes[j][0]
                keep = gts[j][0]
                assert b.dtype == np.int32 and b.shape[1] == 4
                faces = faces_by_key[f'{event}/{name}']
                min_side = synth.DIFFICULTY_MIN_SIDE[difficulty]
                expect = [k + 1 for k, f in enumerate(faces) if min(f['box'][2:]) >= min_side]
                assert keep.reshape(-1).tolist() == expect
                if not faces:
                    assert b.tolist() == [[0, 0, 0, 0]] and keep.shape == (0, 0)
    # same nesting and dtypes as the real file, when it is available
    real = shared_path('data', 'widerface', 'eval_ground_truth', 'wider_hard_val.mat')
    if real.exists():
        r = sio.loadmat(str(real))

        def layout(x):
            x = np.asarray(x)
            return (x.ndim, x.shape[-1] if x.ndim else None, x.dtype.kind,
                    layout(x.flat[0]) if x.dtype == object and x.size else None)
        for k in keys | {'gt_list'}:
            assert layout(hard[k]) == layout(r[k]), k


def test_browse_dataset_writes_images(synthetic, tmp_path):
    root, _ = synthetic
    init_default_scope('mmdet')
    browse = load_tool('tools/analysis_tools/browse_dataset.py')
    out = tmp_path / 'browse'
    browse.main([str(REPO_ROOT / 'configs/_base_/datasets/wider_face_synthetic.py'),
                 '--output-dir', str(out), '--not-show', '--max-images', '3',
                 '--cfg-options', f'train_dataloader.dataset.data_root={root}/'])
    files = sorted(os.listdir(out))
    assert len(files) == 3
    for f in files:
        img = cv2.imread(str(out / f))
        assert img.shape == (640, 640, 3)
    # render() draws each face box in green and each valid landmark in its colour
    from mmdet.registry import DATASETS
    from mmengine.config import Config
    cfg = Config.fromfile(str(REPO_ROOT / 'configs/_base_/datasets/wider_face_synthetic.py'))
    cfg.train_dataloader.dataset.data_root = root + '/'
    ds = DATASETS.build(cfg.train_dataloader.dataset)
    np.random.seed(0)
    item = ds[0]
    img = browse.render(item)
    gt = item['data_samples'].gt_instances
    assert len(gt) > 0
    checked = 0
    for box, kpts, valid in zip(gt.bboxes.tensor, gt.keypoints, gt.keypoints_valid):
        x1, y1, x2, y2 = [int(round(float(v))) for v in box]
        top = img[min(max(y1, 0), 639), max(x1, 0):min(x2, 639) + 1]
        assert (top == [0, 255, 0]).all(-1).any()
        for k in np.flatnonzero(valid.numpy() > 0):
            px, py = [int(round(float(v))) for v in kpts[k]]
            if 0 <= px < 640 and 0 <= py < 640 and x2 - x1 > 60:
                assert img[py, px].tolist() == list(browse.KPT_COLORS[k])
                checked += 1
    assert checked > 0
