"""The RetinaFace detector end to end on tiny inputs (MobileNet-0.25 model base)."""
import pytest
import torch
from mmdet.models.detectors import SingleStageDetector
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.utils import register_all_modules
from mmengine.structures import InstanceData

from projects.retinaface.models.detectors import RetinaFace
from tests.helpers import load_config

register_all_modules(init_default_scope=True)
SIZE = 128


@pytest.fixture(scope='module')
def model():
    cfg = load_config('configs/_base_/models/retinaface_mnet025.py')
    torch.manual_seed(0)
    m = MODELS.build(cfg.model)
    m.init_weights()
    return m


def sample(faces=True, scale_factor=(1.0, 1.0), ignore=False):
    ori = (round(SIZE / scale_factor[1]), round(SIZE / scale_factor[0]))
    ds = DetDataSample(metainfo=dict(img_shape=(SIZE, SIZE), ori_shape=ori,
                                     scale_factor=scale_factor))
    boxes = torch.tensor([[20., 24., 52., 60.], [66., 60., 110., 104.]]) if faces else \
        torch.zeros(0, 4)
    n = len(boxes)
    wh = boxes[:, 2:] - boxes[:, :2]
    base = torch.tensor([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])
    ds.gt_instances = InstanceData(
        bboxes=HorizontalBoxes(boxes), labels=torch.zeros(n, dtype=torch.long),
        keypoints=boxes[:, None, :2] + base[None] * wh[:, None],
        keypoints_valid=torch.ones(n, 5))
    if ignore:
        ds.ignored_instances = InstanceData(
            bboxes=HorizontalBoxes(torch.tensor([[90., 4., 124., 40.]])),
            labels=torch.zeros(1, dtype=torch.long))
    return ds


def images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, SIZE, SIZE), generator=g, dtype=torch.uint8)
            for _ in range(n)]


def test_registered_detector(model):
    assert isinstance(model, RetinaFace) and isinstance(model, SingleStageDetector)
    assert MODELS.get('RetinaFace') is RetinaFace


def test_loss_reaches_backbone(model):
    model.train()
    model.zero_grad()
    data = model.data_preprocessor(
        dict(inputs=images(2), data_samples=[sample(ignore=True), sample(faces=False)]), True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_kpt'}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    first = next(p for n, p in model.backbone.named_parameters() if p.requires_grad)
    assert first.grad is not None and first.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.neck.parameters() if p.requires_grad)


def test_predict_rescales_keypoints_like_boxes(model):
    model.eval()
    cfg = model.bbox_head.test_cfg
    old_thr = cfg.score_thr
    cfg.score_thr = 0.0  # an untrained model: keep low-score detections
    try:
        imgs = images(1, seed=1)
        with torch.no_grad():
            d = model.data_preprocessor(dict(inputs=imgs, data_samples=[sample()]), False)
            plain = model(**d, mode='predict')[0].pred_instances
            sf = (0.5, 0.25)
            d = model.data_preprocessor(
                dict(inputs=imgs, data_samples=[sample(scale_factor=sf)]), False)
            res = model.predict(d['inputs'], d['data_samples'], rescale=True)[0].pred_instances
    finally:
        cfg.score_thr = old_thr
    assert len(plain) > 0 and len(res) == len(plain)
    assert res.keypoints.shape == (len(res), 5, 2)
    assert torch.allclose(res.bboxes, plain.bboxes / torch.tensor([*sf, *sf]), atol=1e-3)
    assert torch.allclose(res.keypoints, plain.keypoints / torch.tensor(sf), atol=1e-3)


def test_tensor_mode(model):
    model.eval()
    with torch.no_grad():
        d = model.data_preprocessor(dict(inputs=images(1), data_samples=[sample()]), False)
        cls, box, kpt, vert = model(d['inputs'], d['data_samples'], mode='tensor')
    assert vert is None
    assert [c.shape[-1] for c in cls] == [16, 8, 4]
    assert kpt[0].shape == (1, 20, 16, 16)
