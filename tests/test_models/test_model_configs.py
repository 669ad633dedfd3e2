"""The model bases (paper R50 cascade, MobileNet-0.25) and the mixing configs build and run."""
import functools

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.utils import register_all_modules
from mmengine.structures import InstanceData

from tests.helpers import load_config

register_all_modules(init_default_scope=True)

R50 = 'configs/_base_/models/retinaface_r50_fpn.py'
MNET = 'configs/_base_/models/retinaface_mnet025.py'
MIX_RETINANET = 'configs/mixing/retinanet_r50_fpn_context_landmarks_wider.py'
MIX_ATSS = 'configs/mixing/atss_r50_fpn_cascade_wider.py'


@functools.lru_cache(maxsize=None)
def build(path):
    """Config and model (built once per file); score_thr 0 so untrained models predict."""
    cfg = load_config(path)
    if cfg.model.backbone.get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None  # no download in tests
    cfg.model.test_cfg.score_thr = 0.0
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return cfg, model


def batch(n, size=128, faces=True):
    samples, imgs = [], []
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        ds = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                         scale_factor=(1.0, 1.0)))
        boxes = torch.tensor([[20., 24., 52., 60.], [66., 60., 110., 104.]]) if faces else \
            torch.zeros(0, 4)
        k = len(boxes)
        kp = boxes[:, None, :2] + torch.rand(k, 5, 2, generator=g) * 30
        ds.gt_instances = InstanceData(
            bboxes=HorizontalBoxes(boxes), labels=torch.zeros(k, dtype=torch.long),
            keypoints=kp, keypoints_valid=torch.ones(k, 5))
        samples.append(ds)
        imgs.append(torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8))
    return dict(inputs=imgs, data_samples=samples)


def test_r50_paper_model_has_102300_anchors_at_640():
    cfg, model = build(R50)
    model.eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.zeros(1, 3, 640, 640))
    sizes = [f.shape[-2:] for f in feats]
    assert [tuple(s) for s in sizes] == [(160, 160), (80, 80), (40, 40), (20, 20), (10, 10)]
    assert all(f.shape[1] == 256 for f in feats)
    anchors = model.bbox_head.prior_generator.grid_priors(sizes, device='cpu')
    assert sum(len(a) for a in anchors) == 102300
    base = model.bbox_head.prior_generator.base_anchors  # per level, (3, 4)
    widths = torch.cat([b[:, 2] - b[:, 0] for b in base])
    assert torch.allclose(widths, 16 * 2**(torch.arange(15.) / 3), rtol=1e-5)
    assert abs(widths.max() - 406.37) < 0.01  # 16 to 406 px in 2^(1/3) steps
    # anchors centred in their cells: first P2 anchor centre is (2, 2)
    a0 = anchors[0][0]
    assert torch.allclose((a0[:2] + a0[2:]) / 2, torch.tensor([2., 2.]))
    head = model.bbox_head
    assert head.stage1.assigner.assigner.pos_iou_thr == 0.7
    assert head.stage1.assigner.assigner.neg_iou_thr == 0.3
    assert head.stage2.assigner.assigner.pos_iou_thr == 0.5
    assert head.stage2.assigner.assigner.neg_iou_thr == 0.4
    assert head.stage1.ohem.neg_pos_ratio == 3 and head.stage2.ohem.neg_pos_ratio == 3


def test_mnet_anchors_equal_reference_priorbox():
    _, model = build(MNET)
    head = model.bbox_head
    size = 160
    steps, min_sizes = [8, 16, 32], [[16, 32], [64, 128], [256, 512]]
    fmaps = [(size // s, size // s) for s in steps]
    ref = []
    for (fh, fw), step, ms in zip(fmaps, steps, min_sizes):
        for i in range(fh):
            for j in range(fw):
                for m in ms:  # the reference PriorBox, in pixels
                    cx, cy = (j + 0.5) * step, (i + 0.5) * step
                    ref.append([cx - m / 2, cy - m / 2, cx + m / 2, cy + m / 2])
    ours = torch.cat(head.prior_generator.grid_priors(fmaps, device='cpu'))
    assert torch.allclose(ours, torch.tensor(ref))
    # heads shaped like ClassHead / BboxHead / LandmarkHead of the published weights
    sd = head.state_dict()
    for i in range(3):
        assert sd[f'cls_heads.{i}.weight'].shape == (4, 64, 1, 1)
        assert sd[f'reg_heads.{i}.weight'].shape == (8, 64, 1, 1)
        assert sd[f'kpt_heads.{i}.weight'].shape == (20, 64, 1, 1)
    assert len(sd) == 18
    dp = model.data_preprocessor
    assert dp.mean.flatten().tolist() == [104., 117., 123.] and not dp._channel_conversion


@pytest.mark.parametrize('path,n', [(MNET, 1), (R50, 1), (MIX_RETINANET, 2), (MIX_ATSS, 2)])
def test_configs_loss_and_predict(path, n):
    cfg, model = build(path)
    model.zero_grad()
    if 'mixing' in path:
        assert cfg.custom_imports == dict(imports=['projects.retinaface'],
                                          allow_failed_imports=False)
        assert cfg.default_scope == 'mmdet'
        assert cfg.train_dataloader.dataset.type == 'WIDERFaceDataset'
    model.train()
    data = model.data_preprocessor(batch(n), True)
    losses = model(**data, mode='loss')
    assert any('kpt' in k for k in losses) == (path != MIX_ATSS)
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(v > 0 for k, v in losses.items() if 'cls' in k or 'bbox' in k)
    sum(losses.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.backbone.parameters())
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(batch(1), False)
        res = model(**data, mode='predict')[0].pred_instances
    assert len(res) > 0
    assert res.bboxes.shape == (len(res), 4)
    if path != MIX_ATSS:
        assert res.keypoints.shape == (len(res), 5, 2)


def test_no_face_batch_for_paper_model():
    _, model = build(R50)
    model.train()
    losses = model(**model.data_preprocessor(batch(1, faces=False), True), mode='loss')
    for s in ('s1', 's2'):
        assert losses[f'{s}.loss_cls'] > 0
        assert losses[f'{s}.loss_bbox'].item() == 0.0 and losses[f'{s}.loss_kpt'].item() == 0.0
