"""Every shipped config (configs/**/*.py except _base_) loads, builds, trains and predicts.

For each config: the model (backbone ``init_cfg`` set to None: no download, no converted
weights) runs ``loss`` and ``predict`` on two hand-built 128x128 images with faces and
landmarks, and the train / test / TTA pipelines of the config run on a real synthetic
WIDER-format image through ``WIDERFaceDataset``.
"""
import copy
import functools

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from projects.retinaface.datasets import WIDERFaceDataset
from tests.helpers import REPO_ROOT
from tests.test_integration import load_tool

make_dataset = load_tool('tools/dataset_converters/make_synthetic_wider.py').make_dataset

CONFIG_DIR = REPO_ROOT / 'configs'
CONFIGS = sorted(
    str(p.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.rglob('*.py')
    if '_base_' not in p.relative_to(CONFIG_DIR).parts)

# Two 128x128 images: (x1, y1, x2, y2) faces; landmarks from a fixed template inside each box.
FACES = [
    [[16., 20., 56., 68.], [70., 30., 118., 88.], [40., 90., 60., 116.]],
    [[30., 24., 94., 104.]],
]
TEMPLATE = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])


def test_configs_are_found():
    # the shipped top-level configs must all be covered by the glob
    for name in ('retinaface_mnet025_fpn.py', 'retinaface_r50_fpn.py',
                 'retinaface_mnet025_synthetic.py',
                 'mixing/atss_r50_fpn_cascade_wider.py',
                 'mixing/retinanet_r50_fpn_context_landmarks_wider.py'):
        assert name in CONFIGS
    assert not any('_base_' in c for c in CONFIGS)


@functools.lru_cache(maxsize=None)
def load(name):
    cfg = Config.fromfile(str(CONFIG_DIR / name))
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return cfg


def _no_pretrained(model_cfg):
    """Copy of ``model_cfg`` whose backbone (and any nested module) loads no weights."""
    model_cfg = copy.deepcopy(model_cfg)
    if model_cfg.get('backbone') is not None:
        model_cfg.backbone.init_cfg = None
    model_cfg.pop('init_cfg', None)
    return model_cfg


def _batch():
    imgs, samples = [], []
    g = torch.Generator().manual_seed(0)
    for faces in FACES:
        boxes = torch.tensor(faces)
        wh = boxes[:, 2:] - boxes[:, :2]
        kpts = boxes[:, None, :2] + torch.from_numpy(TEMPLATE).float()[None] * wh[:, None]
        valid = torch.ones(len(boxes), 5)
        valid[-1] = 0 if len(boxes) > 1 else 1  # one face without landmarks
        sample = DetDataSample(metainfo=dict(
            img_shape=(128, 128), ori_shape=(128, 128), scale_factor=(1.0, 1.0),
            img_id=f'0--Parade/img_{len(samples)}'))
        sample.gt_instances = InstanceData(
            bboxes=HorizontalBoxes(boxes), labels=torch.zeros(len(boxes), dtype=torch.long),
            keypoints=kpts, keypoints_valid=valid)
        samples.append(sample)
        imgs.append(torch.randint(0, 256, (3, 128, 128), generator=g, dtype=torch.uint8))
    return dict(inputs=imgs, data_samples=samples)


_TRAINED = set()


def _check_loss(name, model, with_landmarks):
    model.init_weights()
    model.train()
    data = model.data_preprocessor(_batch(), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total) and total.item() > 0, losses
    assert any('cls' in k for k in losses) and any('bbox' in k for k in losses)
    if with_landmarks:
        kpt_losses = [v for k, v in losses.items() if 'kpt' in k or 'keypoint' in k]
        assert kpt_losses, f'{name}: no landmark loss in {sorted(losses)}'
    total.backward()
    grads = [p.grad for p in model.bbox_head.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize('name', CONFIGS)
def test_config_model_loss_and_predict(name):
    cfg = load(name)
    model_cfg = _no_pretrained(cfg.model)
    model_cfg.test_cfg.score_thr = 0.0  # an untrained model must still predict something
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    with_landmarks = bool(model_cfg.bbox_head.get('with_landmarks', False))
    # The test-mode variants share their parent's model and differ only in test_cfg and the
    # test pipeline: the training side (init + loss) of an identical model runs once.
    train_key = repr({k: v for k, v in model_cfg.to_dict().items() if k != 'test_cfg'})
    if train_key not in _TRAINED:
        _TRAINED.add(train_key)
        _check_loss(name, model, with_landmarks)

    model.eval()
    data = model.data_preprocessor(_batch(), False)
    with torch.no_grad():
        results = model.predict(data['inputs'], data['data_samples'], rescale=True)
    assert len(results) == 2
    for res in results:
        pred = res.pred_instances
        n = len(pred.bboxes)
        assert n > 0 and pred.bboxes.shape == (n, 4) and pred.scores.shape == (n, )
        assert pred.labels.shape == (n, ) and (pred.labels == 0).all()
        assert n <= model_cfg.test_cfg.max_per_img
        if with_landmarks:
            assert pred.keypoints.shape == (n, 5, 2)
            assert torch.isfinite(pred.keypoints).all()
        else:
            assert 'keypoints' not in pred


@pytest.fixture(scope='module')
def synthetic_infos(tmp_path_factory):
    """Data infos of real synthetic images parsed by WIDERFaceDataset (train and val)."""
    root = tmp_path_factory.mktemp('synthetic')
    make_dataset(str(root), num_train=3, num_val=2, seed=1)
    init_default_scope('mmdet')
    infos = {}
    for split in ('train', 'val'):
        ds = WIDERFaceDataset(
            data_root=str(root), ann_file=f'{split}/label.txt',
            data_prefix=dict(img=f'WIDER_{split}/images/'), pipeline=[], test_mode=True)
        infos[split] = [ds.get_data_info(i) for i in range(len(ds))
                        if ds.get_data_info(i)['instances']]
    assert infos['train'] and infos['val']
    return infos


def _dataset_cfg(loader_cfg):
    ds = loader_cfg.dataset
    while 'dataset' in ds:  # dataset wrappers
        ds = ds.dataset
    return ds


def _check_packed(out, name):
    sample = out['data_samples']
    inputs = out['inputs']
    assert inputs.ndim == 3 and inputs.shape[0] == 3, name
    assert tuple(sample.img_shape[:2]) == tuple(inputs.shape[1:]), name
    gt = sample.gt_instances
    n = len(gt.bboxes)
    assert gt.keypoints.shape == (n, 5, 2) and gt.keypoints_valid.shape == (n, 5), name
    assert gt.labels.shape == (n, )
    assert 'img_id' in sample.metainfo and 'scale_factor' in sample.metainfo
    return sample


@pytest.mark.parametrize('name', CONFIGS)
def test_config_pipelines(name, synthetic_infos):
    cfg = load(name)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    train_pipeline = Compose(_dataset_cfg(cfg.train_dataloader).pipeline)
    test_pipeline = Compose(_dataset_cfg(cfg.test_dataloader).pipeline)

    np.random.seed(0)
    for info in synthetic_infos['train']:
        out = train_pipeline(copy.deepcopy(info))
        if out is None:  # a transform may drop a sample; the dataset then retries
            continue
        sample = _check_packed(out, name)
        # the square crop + resize (no keep_ratio) give a square network input
        assert sample.img_shape[0] == sample.img_shape[1], (name, sample.img_shape)

    for info in synthetic_infos['val']:
        out = test_pipeline(copy.deepcopy(info))
        sample = _check_packed(out, name)
        assert tuple(sample.ori_shape) == (info['height'], info['width'])
        assert len(sample.gt_instances) == len(info['instances'])
        # gt in network-input pixels: original boxes x scale_factor
        sx, sy = sample.scale_factor
        boxes = np.array([i['bbox'] for i in info['instances']], dtype=np.float32)
        np.testing.assert_allclose(
            sample.gt_instances.bboxes.tensor.numpy(), boxes * [sx, sy, sx, sy], atol=1e-3)

    if 'tta_pipeline' in cfg:
        tta = Compose(cfg.tta_pipeline)
        info = synthetic_infos['val'][0]
        out = tta(copy.deepcopy(info))
        views = len(out['inputs'])
        assert views >= 2 and len(out['data_samples']) == views
        flips = [s.flip for s in out['data_samples']]
        assert any(flips) and not all(flips)
        for img, sample in zip(out['inputs'], out['data_samples']):
            assert tuple(sample.img_shape[:2]) == tuple(img.shape[1:])
            assert tuple(sample.ori_shape) == (info['height'], info['width'])
