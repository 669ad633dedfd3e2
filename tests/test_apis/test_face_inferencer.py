"""Landmarks in inferencer outputs: FaceInferencer and the wrapped mmdet DetInferencer."""
import json
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from mmdet.apis import DetInferencer, inference_detector, init_detector
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from projects.retinaface.apis import (
    FaceInferencer,
    build_test_pipeline,
    drop_annotation_loaders,
    install_det_inferencer_landmarks,
    landmark_fields,
    uninstall_det_inferencer_landmarks,
)
from projects.retinaface.apis.face_inferencer import _det_pred2dict
from projects.retinaface.visualization import LANDMARK_COLORS, FaceLocalVisualizer
from tests.test_apis.toy_face_detector import toy_predictions

KPTS = [[[10.5, 20.25], [30.0, 20.0], [20.0, 30.0], [12.0, 40.0], [28.0, 40.0]],
        [[110.0, 120.0], [130.0, 120.5], [120.0, 130.0], [112.0, 140.0], [128.0, 140.0]]]


def make_sample(with_keypoints=True, with_vertices=False, img_path='dir/photo_1.jpg'):
    sample = DetDataSample(metainfo=dict(img_path=img_path) if img_path else {})
    pred = InstanceData()
    pred.bboxes = torch.tensor([[5., 15., 35., 45.], [105., 115., 135., 145.]])
    pred.scores = torch.tensor([0.9, 0.4])
    pred.labels = torch.tensor([0, 0])
    if with_keypoints:
        pred.keypoints = torch.tensor(KPTS)
    if with_vertices:
        pred.vertices = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(2, 3, 3)
    sample.pred_instances = pred
    return sample


def bare(cls):
    """An inferencer object without a model: enough for ``pred2dict``."""
    obj = cls.__new__(cls)
    obj.num_predicted_imgs = 0
    return obj


@pytest.mark.parametrize('cls', [FaceInferencer, DetInferencer])
def test_pred2dict_exports_landmarks(cls, tmp_path):
    sample = make_sample(with_vertices=True)
    result = bare(cls).pred2dict(sample)
    assert result['keypoints'] == KPTS
    assert result['vertices'] == sample.pred_instances.vertices.tolist()
    assert result['bboxes'] == sample.pred_instances.bboxes.tolist()
    assert result['scores'] == pytest.approx([0.9, 0.4])

    # Saved JSON (named after the image) holds the landmarks as well.
    result = bare(cls).pred2dict(sample, str(tmp_path))
    saved = json.loads((tmp_path / 'preds' / 'photo_1.json').read_text())
    assert saved['keypoints'] == KPTS and saved == json.loads(json.dumps(result))

    # Without an image path the files are numbered by mmdet's counter.
    inferencer = bare(cls)
    for i in range(2):
        inferencer.pred2dict(make_sample(img_path=None), str(tmp_path / 'n'))
        saved = json.loads((tmp_path / 'n' / 'preds' / f'{i}.json').read_text())
        assert saved['keypoints'] == KPTS

    # Array inputs carry img_path=None (mmdet itself fails on them): numbered files too.
    inferencer = bare(cls)
    array_sample = make_sample(img_path=None)
    array_sample.set_metainfo(dict(img_path=None))
    for i in range(2):
        result = inferencer.pred2dict(array_sample, str(tmp_path / 'arr'))
        saved = json.loads((tmp_path / 'arr' / 'preds' / f'{i}.json').read_text())
        assert saved['keypoints'] == KPTS and result['keypoints'] == KPTS
    assert array_sample.img_path is None  # the caller's sample is not modified


@pytest.mark.parametrize('cls', [FaceInferencer, DetInferencer])
def test_pred2dict_without_landmarks_is_unchanged(cls, tmp_path):
    sample = make_sample(with_keypoints=False)
    result = bare(cls).pred2dict(sample, str(tmp_path))
    assert set(result) == {'labels', 'scores', 'bboxes'}
    assert result == _det_pred2dict(bare(DetInferencer), sample)
    assert set(json.loads((tmp_path / 'preds' / 'photo_1.json').read_text())) == set(result)
    assert landmark_fields(make_sample(with_keypoints=False)) == {}
    assert landmark_fields(DetDataSample()) == {}


def test_install_is_idempotent_and_reversible():
    install_det_inferencer_landmarks()
    install_det_inferencer_landmarks()
    assert DetInferencer.pred2dict.__wrapped__ is _det_pred2dict
    try:
        uninstall_det_inferencer_landmarks()
        assert DetInferencer.pred2dict is _det_pred2dict
        assert 'keypoints' not in bare(DetInferencer).pred2dict(make_sample())
    finally:
        install_det_inferencer_landmarks()
    assert bare(DetInferencer).pred2dict(make_sample())['keypoints'] == KPTS


def test_drop_annotation_loaders():
    pipeline = [dict(type='LoadImageFromFile'), dict(type='mmdet.LoadFaceAnnotations'),
                dict(type='LoadAnnotations', with_bbox=True), dict(type='PackDetInputs')]
    assert [t['type'] for t in drop_annotation_loaders(pipeline)] == [
        'LoadImageFromFile', 'PackDetInputs']


def test_face_inferencer_end_to_end(toy_files, tmp_path):
    inferencer = FaceInferencer(
        str(toy_files / 'cfg.py'), weights=str(toy_files / 'ckpt.pth'), device='cpu',
        show_progress=False)
    names = [type(t).__name__ for t in inferencer.pipeline.transforms]
    assert 'InferencerLoader' in names and not any('Annotations' in n for n in names)
    assert isinstance(inferencer.visualizer, FaceLocalVisualizer)
    assert inferencer.model.dataset_meta['classes'] == ('face', )

    out = inferencer(str(toy_files / 'face.png'), out_dir=str(tmp_path), no_save_pred=False,
                     pred_score_thr=0.3)
    expected = toy_predictions(90, 120, with_vertices=True)
    pred = out['predictions'][0]
    np.testing.assert_allclose(pred['keypoints'], expected['keypoints'].numpy(), atol=1e-4)
    np.testing.assert_allclose(pred['vertices'], expected['vertices'].numpy(), atol=1e-4)
    saved = json.loads((tmp_path / 'preds' / 'face.json').read_text())
    np.testing.assert_allclose(saved['keypoints'], pred['keypoints'])

    vis = mmcv.imread(str(tmp_path / 'vis' / 'face.png'), channel_order='rgb')
    assert vis.shape == (90, 120, 3)
    for k, (x, y) in enumerate(expected['keypoints'][0].tolist()):
        assert tuple(vis[int(y), int(x)]) == LANDMARK_COLORS[k]
    for x, y in expected['keypoints'][1].tolist():  # score 0.2 < 0.3: not drawn
        assert tuple(vis[int(y), int(x)]) == (40, 40, 40)


def test_init_detector_and_inference_detector_return_landmarks(toy_files):
    model = init_detector(str(toy_files / 'cfg.py'), str(toy_files / 'ckpt.pth'), device='cpu')
    pipeline = build_test_pipeline(model.cfg)
    expected = toy_predictions(90, 120)['keypoints']
    img = mmcv.imread(str(toy_files / 'face.png'))
    for inp in (str(toy_files / 'face.png'), img):
        sample = inference_detector(model, inp, test_pipeline=pipeline)
        torch.testing.assert_close(sample.pred_instances.keypoints, expected)
    assert osp.basename(sample.img_path or 'none') == 'none'  # array input has no path


@pytest.mark.parametrize('batch_size', [1, 2])
def test_face_inferencer_skips_unreadable_images_of_a_folder(toy_files, tmp_path, batch_size):
    """A corrupt or truncated file in a folder is skipped, counted and listed; the other
    images all get their predictions. A single unreadable image still raises."""
    folder = tmp_path / 'imgs'
    folder.mkdir()
    shapes = {'a': (90, 120), 'c': (64, 50), 'e': (70, 80)}
    for name, (h, w) in shapes.items():
        mmcv.imwrite(np.full((h, w, 3), 40, np.uint8), str(folder / f'{name}.png'))
    (folder / 'b.jpg').write_bytes(b'not an image')
    good = (folder / 'a.png').read_bytes()
    (folder / 'd.png').write_bytes(good[:len(good) // 2])  # truncated
    inferencer = FaceInferencer(
        str(toy_files / 'cfg.py'), weights=str(toy_files / 'ckpt.pth'), device='cpu',
        show_progress=False)
    out = inferencer(str(folder), batch_size=batch_size, out_dir=str(tmp_path / 'out'),
                     no_save_pred=False, no_save_vis=True)
    assert len(out['predictions']) == 3
    assert sorted(osp.basename(s['input']) for s in out['skipped']) == ['b.jpg', 'd.png']
    assert all(s['reason'] for s in out['skipped'])
    for name, (h, w) in shapes.items():
        pred = json.loads((tmp_path / 'out' / 'preds' / f'{name}.json').read_text())
        np.testing.assert_allclose(pred['bboxes'], toy_predictions(h, w)['bboxes'].numpy(),
                                   atol=1e-3)
    assert sorted(p.name for p in (tmp_path / 'out' / 'preds').iterdir()) == [
        'a.json', 'c.json', 'e.json']
    # a list of inputs too; a readable folder lists nothing
    listed = inferencer([str(folder / 'b.jpg'), str(folder / 'c.png')], no_save_vis=True)
    assert len(listed['predictions']) == 1 and len(listed['skipped']) == 1
    (folder / 'b.jpg').unlink()
    (folder / 'd.png').unlink()
    assert inferencer(str(folder), no_save_vis=True)['skipped'] == []
    with pytest.raises(AssertionError, match='failed to load image'):
        inferencer(str(tmp_path / 'out' / 'preds' / 'a.json'))
