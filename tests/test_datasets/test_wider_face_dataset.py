"""WIDERFaceDataset: the three annotation formats, bad input, vertices, held-out split, and the
real shared WIDER FACE files (skipped when ../shared is absent)."""
import os.path as osp

import cv2
import mmcv
import numpy as np
import pytest
import scipy.io as sio
from mmcv.transforms import LoadImageFromFile
from mmengine.registry import init_default_scope

from projects.retinaface.datasets import WIDERFaceDataset
from projects.retinaface.datasets.wider_face import (
    parse_official_bbx_gt,
    parse_retinaface_label,
    parse_wider_mat,
)
from tests.helpers import REPO_ROOT, load_config, requires_shared, shared_path


@pytest.fixture(autouse=True)
def mmdet_scope():
    init_default_scope('mmdet')


def write_img(root, rel, h=60, w=80, channels=3):
    path = osp.join(root, 'images', rel)
    import os
    os.makedirs(osp.dirname(path), exist_ok=True)
    shape = (h, w) if channels == 1 else (h, w, channels)
    img = np.random.RandomState(0).randint(0, 255, shape).astype(np.uint8)
    cv2.imwrite(path, img)
    return path


def make_ds(tmp_path, text, name='label.txt', **kwargs):
    ann = tmp_path / name
    ann.write_text(text)
    kwargs.setdefault('test_mode', True)
    return WIDERFaceDataset(ann_file=str(ann), data_prefix=dict(img=str(tmp_path / 'images')),
                            **kwargs)


LMK = '10.5 12.0 0.0 20.5 12.0 1.0 15.0 16.0 0.0 11.0 20.0 0.0 19.0 20.0 0.0 0.8'
NO_LMK = ' '.join(['-1.0'] * 15) + ' 0.3'


def test_retinaface_label_format(tmp_path):
    write_img(tmp_path, 'e1/a.jpg')
    write_img(tmp_path, 'e1/b.jpg')
    ds = make_ds(tmp_path, f'# e1/a.jpg\n5 6 20 25 {LMK}\n30 10 8 9 {NO_LMK}\n'
                 '# e1/b.jpg\n1 2 3 4\n')
    assert len(ds) == 2
    a = ds.get_data_info(0)
    assert a['img_id'] == 'e1/a' and a['img_path'].endswith('images/e1/a.jpg')
    assert (a['height'], a['width']) == (60, 80)
    i0, i1 = a['instances']
    assert i0['bbox'] == [5., 6., 25., 31.] and i0['bbox_label'] == 0 and i0['ignore_flag'] == 0
    assert i0['keypoints'] == [[10.5, 12.], [20.5, 12.], [15., 16.], [11., 20.], [19., 20.]]
    assert i0['keypoints_valid'] == [1] * 5
    assert i1['keypoints_valid'] == [0] * 5
    assert ds.get_data_info(1)['instances'][0]['keypoints_valid'] == [0] * 5
    assert ds.face_counts['with_keypoints'] == 1 and ds.face_counts['kept'] == 3


def test_official_txt_and_mat_formats(tmp_path):
    write_img(tmp_path, '0--P/x.jpg')
    write_img(tmp_path, '0--P/y.jpg')
    txt = ('0--P/x.jpg\n2\n1 2 10 12 0 0 0 0 0 0 \n20 20 5 5 2 0 0 1 0 0 \n'
           '0--P/y.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \n')
    ds = make_ds(tmp_path, txt, name='gt.txt')
    assert ds.ann_format == 'official_txt'
    assert [i['ignore_flag'] for i in ds.get_data_info(0)['instances']] == [0, 1]
    assert ds.get_data_info(1)['instances'] == []
    assert ds.face_counts == dict(ds.face_counts, raw=3, kept=1, ignored=1, dropped_zero_size=1)

    def cell(items):
        arr = np.empty((len(items), 1), dtype=object)
        for i, it in enumerate(items):
            arr[i, 0] = it
        return arr
    mat = dict(event_list=cell([np.array(['0--P'])]),
               file_list=cell([cell([np.array(['x']), np.array(['y'])])]),
               face_bbx_list=cell([cell([np.array([[1, 2, 10, 12], [20, 20, 5, 5]], np.int32),
                                         np.zeros((1, 4), np.int32)])]),
               invalid_label_list=cell([cell([np.array([[0], [1]], np.uint8),
                                              np.zeros((1, 1), np.uint8)])]))
    sio.savemat(tmp_path / 'gt.mat', mat)
    ds2 = WIDERFaceDataset(ann_file=str(tmp_path / 'gt.mat'),
                           data_prefix=dict(img=str(tmp_path / 'images')), test_mode=True)
    assert ds2.ann_format == 'mat'
    for i in range(2):
        a, b = ds.get_data_info(i), ds2.get_data_info(i)
        assert a['img_id'] == b['img_id'] and a['img_path'] == b['img_path']
        assert [(x['bbox'], x['ignore_flag']) for x in a['instances']] == \
            [(x['bbox'], x['ignore_flag']) for x in b['instances']]
    assert ds2.face_counts == ds.face_counts


@pytest.mark.parametrize('text, match', [
    ('# e/a.jpg\n1 2 3\n', r'label.txt:2: expected 4, 19 or 20 numbers per face, got 3'),
    ('# e/a.jpg\n1 2 x 4\n', r'label.txt:2: expected numbers'),
    ('1 2 3 4\n# e/a.jpg\n', r'label.txt:1: expected an image path line of the official'),
    ('# e/a.jpg\n1 2 3 nan\n', r'label.txt:2: non-finite'),
    ('# e/a.jpg\n# e/a.jpg\n', r"label.txt:2: duplicate image 'e/a.jpg'"),
])
def test_malformed_label_lines_name_file_and_line(tmp_path, text, match):
    write_img(tmp_path, 'e/a.jpg')
    with pytest.raises(ValueError, match=match):
        make_ds(tmp_path, text)


@pytest.mark.parametrize('text, match', [
    ('e/a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n', r'gt.txt:2: file ends inside image'),
    ('e/a.jpg\ntwo\n', r"gt.txt:2: expected the face count of 'e/a.jpg'"),
    ('e/a.jpg\n1\n1 2 3 4 0 0\n', r'gt.txt:3: expected 10 numbers'),
    ('1 2 3 4\n', r'gt.txt:1: expected an image path line'),
])
def test_malformed_official_txt(tmp_path, text, match):
    write_img(tmp_path, 'e/a.jpg')
    with pytest.raises(ValueError, match=match):
        make_ds(tmp_path, text, name='gt.txt')


def test_zero_size_and_outside_boxes_are_counted(tmp_path):
    write_img(tmp_path, 'e/a.jpg', h=60, w=80)
    ds = make_ds(tmp_path, '# e/a.jpg\n10 10 0 5\n10 10 5 -1\n70 50 20 20\n100 10 5 5\n'
                 '-5 -5 10 10\n20 20 10 10\n')
    fc = ds.face_counts
    assert fc['raw'] == 6 and fc['dropped_zero_size'] == 2 and fc['dropped_outside'] == 1
    assert fc['kept'] == 3 and fc['clipped'] == 2
    assert fc['raw'] == fc['kept'] + fc['ignored'] + fc['dropped_zero_size'] + \
        fc['dropped_outside']
    boxes = [i['bbox'] for i in ds.get_data_info(0)['instances']]
    assert boxes == [[70., 50., 80., 60.], [0., 0., 5., 5.], [20., 20., 30., 30.]]
    # without clipping the boxes stay as annotated
    ds2 = make_ds(tmp_path, '# e/a.jpg\n70 50 20 20\n', clip_to_image=False)
    assert ds2.get_data_info(0)['instances'][0]['bbox'] == [70., 50., 90., 70.]


def test_missing_images(tmp_path):
    write_img(tmp_path, 'e/a.jpg')
    text = '# e/a.jpg\n1 1 5 5\n# e/missing.jpg\n1 1 5 5\n'
    with pytest.raises(FileNotFoundError, match=r'image not found: .*e/missing.jpg'):
        make_ds(tmp_path, text)
    ds = make_ds(tmp_path, text, missing_images='skip')
    assert len(ds) == 1 and ds.image_counts['missing_skipped'] == 1
    assert ds.face_counts['raw'] == 1
    ds = make_ds(tmp_path, text, missing_images='keep')
    assert len(ds) == 2 and ds.get_data_info(1)['height'] is None
    with pytest.raises(FileNotFoundError, match='missing.jpg'):
        LoadImageFromFile()(dict(img_path=ds.get_data_info(1)['img_path']))
    # unchecked and missing when loaded: undecodable_images applies (size unknown: 32 x 32)
    ds = make_ds(tmp_path, text, missing_images='keep', pipeline=FACE_PIPELINE)
    sample = ds[1]['data_samples']
    assert sample.img_unreadable is True and sample.ori_shape == (32, 32)
    ds = make_ds(tmp_path, text, missing_images='keep', undecodable_images='error',
                 pipeline=FACE_PIPELINE)
    with pytest.raises(OSError, match=r'cannot load image .*e/missing.jpg \(FileNotFoundError'):
        ds[1]


def test_unreadable_image(tmp_path):
    (tmp_path / 'images' / 'e').mkdir(parents=True)
    (tmp_path / 'images' / 'e' / 'bad.jpg').write_bytes(b'not an image at all')
    text = '# e/bad.jpg\n1 1 5 5\n'
    with pytest.raises(ValueError, match=r'cannot read image .*e/bad.jpg'):
        make_ds(tmp_path, text)
    assert len(make_ds(tmp_path, text, missing_images='skip')) == 0
    ds = make_ds(tmp_path, text, missing_images='keep')
    with pytest.raises(AssertionError, match=r'failed to load image: .*e/bad.jpg'):
        LoadImageFromFile()(dict(img_path=ds.get_data_info(0)['img_path']))


def write_truncated_jpeg(root, rel, h=60, w=80):
    """A JPEG cut short (an interrupted download): the header, and so the dataset's build-time
    check, is fine, but ``LoadImageFromFile`` (``cv2.imdecode`` on the bytes) gets no image."""
    path = write_img(root, rel, h=h, w=w)
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) - 200])
    assert mmcv.imfrombytes(data[:len(data) - 200]) is None
    return path


FACE_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadFaceAnnotations'),
                 dict(type='PackFaceInputs')]


def test_undecodable_image_in_test_mode_gets_a_placeholder(tmp_path):
    write_img(tmp_path, 'e/a.jpg')
    write_truncated_jpeg(tmp_path, 'e/cut.jpg', h=50, w=70)
    ds = make_ds(tmp_path, f'# e/a.jpg\n1 1 5 5\n# e/cut.jpg\n2 3 10 12 {LMK}\n',
                 pipeline=FACE_PIPELINE)
    assert len(ds) == 2  # the header of the cut file is readable
    good = ds[0]
    assert 'img_unreadable' not in good['data_samples'].metainfo
    out = ds[1]
    sample = out['data_samples']
    # black image of the size from the header, flagged, faces kept for the evaluation
    assert out['inputs'].shape == (3, 50, 70) and int(out['inputs'].abs().sum()) == 0
    assert sample.img_unreadable is True and sample.ori_shape == (50, 70)
    assert sample.img_id == 'e/cut'
    assert sample.gt_instances.bboxes.tensor.tolist() == [[2., 3., 12., 15.]]
    assert sample.gt_instances.keypoints.shape == (1, 5, 2)
    assert ds.image_counts['undecodable'] == 1


def test_undecodable_image_in_training_draws_another(tmp_path):
    write_img(tmp_path, 'e/a.jpg')
    write_truncated_jpeg(tmp_path, 'e/cut.jpg')
    text = '# e/a.jpg\n1 1 5 5\n# e/cut.jpg\n2 3 10 12\n'
    ds = make_ds(tmp_path, text, test_mode=False, pipeline=FACE_PIPELINE)
    for _ in range(3):
        assert ds[1]['data_samples'].img_path.endswith('e/a.jpg')
    assert ds.image_counts['undecodable'] == 1 and len(ds.undecodable_files) == 1
    ds = make_ds(tmp_path, text, undecodable_images='error', pipeline=FACE_PIPELINE)
    with pytest.raises(OSError, match=r'cannot load image .*e/cut.jpg .*cannot be decoded'):
        ds[1]
    with pytest.raises(ValueError, match="'skip' needs test_mode=False"):
        make_ds(tmp_path, text, undecodable_images='skip', pipeline=FACE_PIPELINE)
    with pytest.raises(ValueError, match='undecodable_images must be'):
        make_ds(tmp_path, text, undecodable_images='ignore')


def test_pipeline_errors_on_readable_images_are_not_hidden(tmp_path):
    write_img(tmp_path, 'e/a.jpg')
    ds = make_ds(tmp_path, '# e/a.jpg\n1 1 5 5\n',
                 pipeline=[dict(type='LoadImageFromFile', color_type='no-such-flag'),
                           dict(type='PackFaceInputs')])
    with pytest.raises(KeyError, match='no-such-flag'):
        ds[0]
    assert ds.image_counts['undecodable'] == 0


@pytest.mark.parametrize('channels', [1, 4])
def test_gray_and_rgba_images_load_as_bgr(tmp_path, channels):
    rel = 'e/g.png'
    write_img(tmp_path, rel, h=30, w=40, channels=channels)
    ds = make_ds(tmp_path, f'# {rel}\n1 1 5 5\n',
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadFaceAnnotations'),
                           dict(type='PackFaceInputs')])
    assert (ds.get_data_info(0)['height'], ds.get_data_info(0)['width']) == (30, 40)
    out = ds[0]
    assert out['inputs'].shape == (3, 30, 40)


def test_images_without_faces_filtered_only_for_training(tmp_path):
    write_img(tmp_path, 'e/a.jpg')
    write_img(tmp_path, 'e/b.jpg')
    write_img(tmp_path, 'e/c.jpg')
    text = '# e/a.jpg\n1 1 5 5\n# e/b.jpg\n0 0 0 0\n# e/c.jpg\n'
    assert len(make_ds(tmp_path, text, test_mode=True,
                       filter_cfg=dict(filter_empty_gt=True))) == 3
    ds = make_ds(tmp_path, text, test_mode=False, filter_cfg=dict(filter_empty_gt=True))
    assert len(ds) == 1 and ds.image_counts['filtered'] == 2
    # min_size uses the image size read from the header
    assert len(make_ds(tmp_path, text, test_mode=False, filter_cfg=dict(min_size=61))) == 0


def test_vertices_file(tmp_path):
    write_img(tmp_path, 'e/a.jpg')
    write_img(tmp_path, 'e/b.jpg')
    v = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    v[1, 2, 0] = np.nan
    np.savez(tmp_path / 'verts.npz', **{'e/a': v})
    text = '# e/a.jpg\n1 1 5 5\n0 0 0 0\n# e/b.jpg\n2 2 5 5\n'
    # row 2 of e/a is dropped (zero size) but still has its row in the vertices file
    with pytest.raises(ValueError, match=r"verts.npz: 'e/a' has vertices for 2 faces but the "
                       r'annotation has 3 rows'):
        make_ds(tmp_path, text.replace('0 0 0 0\n', '0 0 0 0\n3 3 4 4\n'),
                vertices_file=str(tmp_path / 'verts.npz'))
    ds = make_ds(tmp_path, text, vertices_file=str(tmp_path / 'verts.npz'))
    a = ds.get_data_info(0)['instances']
    assert len(a) == 1 and a[0]['vertices'] == v[0].tolist() and a[0]['vertices_valid'] == 1
    b = ds.get_data_info(1)['instances'][0]
    assert b['vertices_valid'] == 0 and np.asarray(b['vertices']).shape == (3, 3)
    np.savez(tmp_path / 'verts2.npz', **{'e/a': v[::-1].copy()})
    ds = make_ds(tmp_path, text, vertices_file=str(tmp_path / 'verts2.npz'))
    assert ds.get_data_info(0)['instances'][0]['vertices_valid'] == 0  # NaN -> invalid


def test_held_out_split_is_deterministic_and_disjoint(tmp_path):
    lines = []
    for i in range(23):
        write_img(tmp_path, f'e/{i}.jpg', h=20, w=20)
        lines.append(f'# e/{i}.jpg\n1 1 5 5\n')
    text = ''.join(lines)
    rest = make_ds(tmp_path, text, held_out=dict(every=10, offset=0, part='rest'))
    held = make_ds(tmp_path, text, held_out=dict(every=10, offset=0, part='held_out'))
    held_ids = [held.get_data_info(i)['img_id'] for i in range(len(held))]
    rest_ids = {rest.get_data_info(i)['img_id'] for i in range(len(rest))}
    assert held_ids == ['e/0', 'e/10', 'e/20']
    assert len(rest_ids) == 20 and not rest_ids & set(held_ids)
    with pytest.raises(ValueError, match='bad held_out'):
        make_ds(tmp_path, text, held_out=dict(every=10, offset=10))


# ----------------------------------------------------------------- real files
@requires_shared('data', 'widerface', 'wider_face_split', 'wider_face_train.mat')
def test_real_train_mat_counts():
    ds = WIDERFaceDataset(ann_file=str(shared_path('data', 'widerface', 'wider_face_split',
                                                   'wider_face_train.mat')),
                          missing_images='keep', test_mode=True, serialize_data=False)
    fc = ds.face_counts
    assert len(ds) == 12880
    assert fc['raw'] == 159424
    assert fc['dropped_zero_size'] == 31
    assert fc['ignored'] == 2399
    assert fc['kept'] + fc['ignored'] + fc['dropped_zero_size'] + fc['dropped_outside'] == \
        159424


@requires_shared('data', 'widerface', 'eval_ground_truth', 'wider_face_val.mat')
@requires_shared('data', 'widerface', 'retinaface_gt', 'val', 'label.txt')
def test_real_val_mat_and_label_txt_agree():
    root = shared_path('data', 'widerface')
    mat_images = parse_wider_mat(str(root / 'eval_ground_truth' / 'wider_face_val.mat'))
    txt_images = parse_retinaface_label(str(root / 'retinaface_gt' / 'val' / 'label.txt'))
    assert len(mat_images) == len(txt_images) == 3226
    mat_by_path = {m['path']: m for m in mat_images}
    empty = 0
    for t in txt_images:
        m = mat_by_path[t['path']]
        assert [r['xywh'] for r in t['rows']] == [r['xywh'] for r in m['rows']], t['path']
        empty += [r['xywh'] for r in t['rows']] == [[0., 0., 0., 0.]]
    assert empty == 4
    assert sum(len(m['rows']) for m in mat_images) == 39708
    assert sum(r['invalid'] for m in mat_images for r in m['rows']) == 585
    ds = WIDERFaceDataset(ann_file=str(root / 'eval_ground_truth' / 'wider_face_val.mat'),
                          missing_images='keep', test_mode=True, serialize_data=False)
    fc = ds.face_counts
    assert len(ds) == 3226 and fc['raw'] == 39708
    assert fc['dropped_zero_size'] == 11 and fc['ignored'] == 585
    assert fc['kept'] + fc['ignored'] + fc['dropped_zero_size'] == 39708


@requires_shared('data', 'widerface', 'retinaface_gt', 'train', 'label.txt')
@requires_shared('data', 'widerface', 'wider_face_split', 'wider_face_train.mat')
def test_real_train_label_txt():
    root = shared_path('data', 'widerface')
    ds = WIDERFaceDataset(data_root=str(root), ann_file='retinaface_gt/train/label.txt',
                          data_prefix=dict(img='WIDER_train/images/'), test_mode=True)
    fc = ds.face_counts
    assert len(ds) == 1239 and fc['raw'] == 6590 and fc['with_keypoints'] == 5373
    assert all(ds.get_data_info(i)['height'] > 0 for i in range(0, len(ds), 97))
    # boxes identical to the official train .mat for these images
    mat = {m['path']: m for m in parse_wider_mat(str(root / 'wider_face_split' /
                                                     'wider_face_train.mat'))}
    for t in parse_retinaface_label(str(root / 'retinaface_gt' / 'train' / 'label.txt')):
        assert [r['xywh'] for r in t['rows']] == [r['xywh'] for r in mat[t['path']]['rows']]


def test_shared_config_splits():
    from mmdet.registry import DATASETS
    cfg = load_config('configs/_base_/datasets/wider_face_shared.py')
    root = cfg.train_dataloader.dataset.data_root
    if not osp.isfile(osp.join(root, 'retinaface_gt', 'train', 'label.txt')):
        pytest.skip(f'needs the shared data beside the repository ({root})')
    train = DATASETS.build(cfg.train_dataloader.dataset)
    held = DATASETS.build(cfg.held_out_dataloader.dataset)
    val = DATASETS.build(cfg.val_dataloader.dataset)
    assert len(held) == 124 and train.image_counts['selected'] == 1239 - 124
    assert held.face_counts['raw'] == 707 and held.face_counts['with_keypoints'] == 650
    train_ids = {train.get_data_info(i)['img_id'] for i in range(len(train))}
    held_ids = {held.get_data_info(i)['img_id'] for i in range(len(held))}
    assert not train_ids & held_ids
    assert len(val) == 11 and val.image_counts['missing_skipped'] == 3226 - 11
    assert osp.isfile(osp.join(cfg.val_evaluator.gt_dir, 'wider_hard_val.mat'))
    assert osp.realpath(root) == osp.realpath(REPO_ROOT.parent / 'shared' / 'data' / 'widerface')


def test_parse_functions_handle_empty_official_image(tmp_path):
    p = tmp_path / 'gt.txt'
    p.write_text('e/a.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n')
    imgs = parse_official_bbx_gt(str(p))
    assert imgs[0]['path'] == 'e/a.jpg' and [r['xywh'] for r in imgs[0]['rows']] == [[0.] * 4]


def test_image_size_follows_exif_orientation(tmp_path):
    """The dataset's image size is the decoded one: cv2 (LoadImageFromFile) applies the EXIF
    orientation, so a 200x100 JPEG tagged 'rotate 90' loads as 100 wide and 200 high."""
    import cv2
    from PIL import Image

    from projects.retinaface.datasets.wider_face import read_image_size
    path = str(tmp_path / 'rot.jpg')
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new('RGB', (200, 100), (90, 90, 90)).save(path, exif=exif)
    assert cv2.imread(path).shape[:2] == (200, 100)
    assert read_image_size(path) == (200, 100)
    plain = str(tmp_path / 'plain.jpg')
    Image.new('RGB', (200, 100)).save(plain)
    assert read_image_size(plain) == (100, 200)


def test_missing_annotation_file_says_where_to_get_the_data(tmp_path):
    """A fresh checkout without WIDER FACE: the error names the normalised path and points to
    the README section and the data-root settings."""
    with pytest.raises(FileNotFoundError) as err:
        WIDERFaceDataset(data_root=str(tmp_path / 'cfg' / '..'), ann_file='train/label.txt',
                         data_prefix=dict(img='images/'))
    message = str(err.value)
    assert f'annotation file not found: {osp.join(str(tmp_path), "train", "label.txt")}' \
        in message
    assert 'WIDER FACE data' in message and 'WIDER_DATA_ROOT' in message
