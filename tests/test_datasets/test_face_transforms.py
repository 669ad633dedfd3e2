"""LoadFaceAnnotations, RandomSquareCrop and PackFaceInputs, alone and in the training
pipeline."""
import numpy as np
import pytest
import torch
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope

from projects.retinaface.datasets.transforms import (
    LoadFaceAnnotations,
    PackFaceInputs,
    RandomSquareCrop,
)
from projects.retinaface.structures import KeypointBoxes


@pytest.fixture(autouse=True)
def mmdet_scope():
    init_default_scope('mmdet')


def make_instances(rng, n, h, w, num_vertices=0):
    """Random faces; instance i has label i so it can be tracked through transforms."""
    insts = []
    for i in range(n):
        bw, bh = rng.uniform(8, 60), rng.uniform(8, 60)
        x, y = rng.uniform(-10, w - bw + 10), rng.uniform(-10, h - bh + 10)
        kp = np.stack([x + rng.uniform(0, bw, 5), y + rng.uniform(0, bh, 5)], 1)
        valid = [0] * 5 if i % 3 == 1 else [1] * 5
        inst = dict(bbox=[x, y, x + bw, y + bh], bbox_label=i, ignore_flag=int(i % 4 == 3),
                    keypoints=kp.tolist(), keypoints_valid=valid)
        if num_vertices:
            inst['vertices'] = np.concatenate(
                [np.stack([x + rng.uniform(0, bw, num_vertices),
                           y + rng.uniform(0, bh, num_vertices)], 1),
                 rng.uniform(-5, 5, (num_vertices, 1))], 1).tolist()
            inst['vertices_valid'] = int(i % 2 == 0)
        insts.append(inst)
    return insts


def base_results(rng, n=12, h=120, w=200, num_vertices=0):
    img = rng.integers(0, 255, (h, w, 3)).astype(np.uint8)
    return dict(img=img, img_shape=(h, w), ori_shape=(h, w), img_path='e/x.jpg', img_id='e/x',
                instances=make_instances(rng, n, h, w, num_vertices))


def test_load_face_annotations():
    rng = np.random.default_rng(0)
    raw = base_results(rng, n=4, num_vertices=3)
    insts = raw['instances']
    res = LoadFaceAnnotations()(raw)
    b = res['gt_bboxes']
    np.testing.assert_allclose(b.tensor.numpy(), [i['bbox'] for i in insts], rtol=1e-6)
    np.testing.assert_allclose(b.keypoints.numpy(), [i['keypoints'] for i in insts], rtol=1e-6)
    np.testing.assert_allclose(b.vertices.numpy(), [i['vertices'] for i in insts], rtol=1e-6)
    assert isinstance(b, KeypointBoxes) and b.tensor.dtype == torch.float32
    assert b.keypoints.shape == (4, 5, 2) and b.vertices.shape == (4, 3, 3)
    assert b.keypoints_valid[1].sum() == 0 and b.keypoints_valid[0].sum() == 5
    assert res['gt_bboxes_labels'].tolist() == [0, 1, 2, 3]
    assert res['gt_bboxes_labels'].dtype == np.int64
    assert res['gt_ignore_flags'].tolist() == [False, False, False, True]
    # bare image (inference): empty annotations with the right shapes
    bare = LoadFaceAnnotations()(dict(img=np.zeros((5, 5, 3), np.uint8)))
    assert bare['gt_bboxes'].tensor.shape == (0, 4)
    assert bare['gt_bboxes'].keypoints.shape == (0, 5, 2)
    assert bare['gt_bboxes_labels'].shape == (0, ) and bare['gt_ignore_flags'].shape == (0, )
    with pytest.raises(ValueError, match='has 4 keypoints, expected 5'):
        insts[0]['keypoints'] = insts[0]['keypoints'][:4]
        LoadFaceAnnotations()(dict(instances=insts, img_path='e/x.jpg'))


@pytest.mark.parametrize('seed', range(6))
def test_random_square_crop_keeps_centred_faces_and_moves_landmarks(seed):
    rng = np.random.default_rng(seed)
    np.random.seed(seed)
    res = LoadFaceAnnotations()(base_results(rng, num_vertices=2))
    before = res['gt_bboxes'].clone()
    flags_before = res['gt_ignore_flags'].copy()
    h, w = res['img'].shape[:2]
    crop = RandomSquareCrop(scale_range=(0.3, 1.0))
    out = crop(res)
    x0, y0, x1, y1 = out['crop_box'].tolist()
    side = x1 - x0
    assert out['img'].shape[:2] == (side, side) == tuple(out['img_shape'])
    if side == max(h, w):  # pad fallback: nothing moved
        assert torch.equal(out['gt_bboxes'].tensor, before.tensor)
        return
    assert int(0.3 * min(h, w)) <= side <= min(h, w)
    ids = out['gt_bboxes_labels']
    centres = before.centers.numpy()
    inside = (centres[:, 0] > x0) & (centres[:, 0] < x1) & (centres[:, 1] > y0) & \
        (centres[:, 1] < y1)
    assert sorted(ids.tolist()) == np.flatnonzero(inside).tolist()
    b = out['gt_bboxes']
    assert len(b) == len(ids) == len(out['gt_ignore_flags'])
    off = torch.tensor([x0, y0])
    for j, i in enumerate(ids):
        # every kept centre is inside the crop; boxes are translated then clipped
        expect = (before.tensor[i] - off.repeat(2)).clamp(0, side)
        torch.testing.assert_close(b.tensor[j], expect)
        # every landmark moved by the same offset (valid or not), and validity is unchanged
        torch.testing.assert_close(b.keypoints[j], before.keypoints[i] - off)
        assert torch.equal(b.keypoints_valid[j], before.keypoints_valid[i])
        torch.testing.assert_close(b.vertices[j, :, :2], before.vertices[i, :, :2] - off)
        assert b.vertices_valid[j] == before.vertices_valid[i]
        assert out['gt_ignore_flags'][j] == flags_before[i]
    # at least one non-ignored face is entirely inside (reference acceptance rule)
    whole = [(b.tensor[j] == (before.tensor[i] - off.repeat(2))).all() and not flags_before[i]
             for j, i in enumerate(ids)]
    assert any(whole)


def test_random_square_crop_fallbacks_and_empty_images():
    # a face wider than any square crop can never be entirely inside -> fallback
    img = np.full((100, 200, 3), 7, np.uint8)
    inst = [dict(bbox=[10, 10, 160, 90], bbox_label=0, ignore_flag=0,
                 keypoints=[[20, 20]] * 5, keypoints_valid=[1] * 5)]
    res = LoadFaceAnnotations()(dict(img=img.copy(), img_shape=(100, 200), instances=inst))
    out = RandomSquareCrop(max_trials=20)(res)
    assert out['img'].shape == (200, 200, 3)
    assert (out['img'][:100] == 7).all() and (out['img'][100:] == [104, 117, 123]).all()
    assert out['gt_bboxes'].tensor[0].tolist() == [10, 10, 160, 90]
    res = LoadFaceAnnotations()(dict(img=img.copy(), img_shape=(100, 200), instances=inst))
    out = RandomSquareCrop(max_trials=20, fallback='whole')(res)
    assert out['img'].shape == (100, 200, 3) and len(out['gt_bboxes']) == 1
    # with require_whole_face=False the centre rule alone suffices
    res = LoadFaceAnnotations()(dict(img=img.copy(), img_shape=(100, 200), instances=inst))
    out = RandomSquareCrop(require_whole_face=False)(res)
    assert out['img'].shape[0] == out['img'].shape[1] <= 100 and len(out['gt_bboxes']) == 1
    # no faces: a plain random square crop
    res = LoadFaceAnnotations()(dict(img=img.copy(), img_shape=(100, 200)))
    out = RandomSquareCrop(scale_choices=[0.5])(res)
    assert out['img'].shape == (50, 50, 3) and len(out['gt_bboxes']) == 0
    with pytest.raises(ValueError, match='scale_range'):
        RandomSquareCrop(scale_range=(0, 1))


def test_pack_face_inputs_aligned():
    rng = np.random.default_rng(1)
    res = LoadFaceAnnotations()(base_results(rng, n=8, num_vertices=4))
    kp = res['gt_bboxes'].keypoints.clone()
    boxes = res['gt_bboxes'].tensor.clone()
    out = PackFaceInputs()(res)
    s = out['data_samples']
    assert s.metainfo['img_id'] == 'e/x' and s.metainfo['scale_factor'] == (1.0, 1.0)
    for inst, ids in ((s.gt_instances, [0, 1, 2, 4, 5, 6]), (s.ignored_instances, [3, 7])):
        assert type(inst.bboxes) is HorizontalBoxes
        assert inst.labels.tolist() == ids and inst.labels.dtype == torch.long
        assert torch.equal(inst.bboxes.tensor, boxes[ids])
        assert torch.equal(inst.keypoints, kp[ids])
        assert inst.keypoints_valid.dtype == torch.float32
        assert inst.keypoints_valid[:, 0].tolist() == [float(i % 3 != 1) for i in ids]
        assert inst.vertices.shape == (len(ids), 4, 3)
        assert inst.vertices_valid.tolist() == [float(i % 2 == 0) for i in ids]
    # plain boxes (no landmarks): zero, invalid keypoints; no vertices field
    out = PackFaceInputs()(dict(img=np.zeros((4, 4, 3), np.uint8),
                                gt_bboxes=HorizontalBoxes(torch.tensor([[0., 0., 2., 2.]])),
                                gt_bboxes_labels=np.array([0])))
    g = out['data_samples'].gt_instances
    assert g.keypoints.shape == (1, 5, 2) and g.keypoints_valid.sum() == 0
    assert 'vertices' not in g


@pytest.mark.parametrize('seed', range(3))
def test_invalid_landmarks_stay_invalid_through_training_pipeline(seed):
    np.random.seed(seed)
    rng = np.random.default_rng(seed)
    pipeline = Compose([
        dict(type='LoadFaceAnnotations'),
        dict(type='RandomSquareCrop'),
        dict(type='PhotoMetricDistortion'),
        dict(type='Resize', scale=(64, 64), keep_ratio=False),
        dict(type='RandomFlip', prob=1.0),
        dict(type='Pad', size=(80, 80)),
        dict(type='PackFaceInputs'),
    ])
    res = base_results(rng, n=12)
    insts = res['instances']
    out = pipeline(res)
    s = out['data_samples']
    assert out['inputs'].shape == (3, 80, 80) and s.metainfo['flip']
    for inst in (s.gt_instances, s.ignored_instances):
        for label, valid, pts in zip(inst.labels.tolist(), inst.keypoints_valid,
                                     inst.keypoints):
            expect = insts[label]['keypoints_valid'][0]
            assert valid.tolist() == [float(expect)] * 5
            if expect:  # flip + swap keeps the x order of points 0 and 1
                orig = np.asarray(insts[label]['keypoints'])
                assert (pts[0, 0] <= pts[1, 0]) == (orig[0, 0] <= orig[1, 0])
        assert len(inst.bboxes) == len(inst.labels) == len(inst.keypoints)
