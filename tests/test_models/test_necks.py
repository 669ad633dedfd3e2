"""Tests of RetinaFaceFPN and ContextModule (layout of the reference RetinaFace necks)."""
import os.path as osp

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS

from projects.retinaface.models.backbones import MobileNetV1
from projects.retinaface.models.backbones import mobilenet_v1 as mbv1_names
from projects.retinaface.models.necks import ContextModule, RetinaFaceFPN
from projects.retinaface.models.necks import context_module as ctx_names
from projects.retinaface.models.necks import retinaface_fpn as fpn_names
from tests.helpers import requires_shared, shared_path

REF_PTH = ('weights', 'mobilenet0.25_Final.pth')
# Backbone feature sizes of a 333x517 image (strides 8, 16, 32 with ceil division).
ODD_SIZES = [(42, 65), (21, 33), (11, 17)]
SQUARE_SIZES = [(80, 80), (40, 40), (20, 20)]


def _feats(sizes, channels=(64, 128, 256), batch=1):
    return tuple(torch.randn(batch, c, h, w) for c, (h, w) in zip(channels, sizes))


@pytest.mark.parametrize('sizes', [SQUARE_SIZES, ODD_SIZES])
def test_fpn_shapes(sizes):
    fpn = MODELS.build(dict(type='RetinaFaceFPN', in_channels=[64, 128, 256], out_channels=64))
    assert isinstance(fpn, RetinaFaceFPN)
    with torch.no_grad():
        outs = fpn.eval()(_feats(sizes))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [(1, 64, h, w) for h, w in sizes]


def test_fpn_top_down_order_and_activations():
    fpn = RetinaFaceFPN([16, 24, 32], 64).eval()
    # reference slope rule
    assert fpn.lateral_convs[0].activate.negative_slope == 0.1
    assert RetinaFaceFPN([16, 24, 32], 128).merge_convs[0].activate.negative_slope == 0.0
    assert len(fpn.merge_convs) == 2
    assert fpn.lateral_convs[2].conv.kernel_size == (1, 1)
    assert fpn.merge_convs[0].conv.kernel_size == (3, 3)
    # the top level is only the lateral; lower levels merge *before* being passed down
    feats = _feats(ODD_SIZES, channels=(16, 24, 32), batch=2)
    with torch.no_grad():
        outs = fpn(feats)
        lat = [conv(x) for conv, x in zip(fpn.lateral_convs, feats)]
        o3 = lat[2]
        o2 = fpn.merge_convs[1](lat[1] + F.interpolate(o3, size=ODD_SIZES[1], mode='nearest'))
        o1 = fpn.merge_convs[0](lat[0] + F.interpolate(o2, size=ODD_SIZES[0], mode='nearest'))
    for a, b in zip(outs, (o1, o2, o3)):
        assert torch.allclose(a, b, atol=1e-6)
    # the coarsest output has been through LeakyReLU(0.1) only: negatives are 0.1 * x
    assert (outs[2] < 0).any()


def test_fpn_bad_input():
    with pytest.raises(ValueError, match='in_channels'):
        RetinaFaceFPN(64, 64)
    fpn = RetinaFaceFPN([8, 8], 16)
    with pytest.raises(ValueError, match='2 levels'):
        fpn(_feats(SQUARE_SIZES, channels=(8, 8, 8)))


@pytest.mark.parametrize('sizes', [SQUARE_SIZES, ODD_SIZES])
def test_context_module_shapes(sizes):
    ctx = MODELS.build(dict(type='ContextModule', in_channels=64, out_channels=64))
    assert isinstance(ctx, ContextModule) and len(ctx.blocks) == 3
    with torch.no_grad():
        outs = ctx.eval()(_feats(sizes, channels=(64, 64, 64)))
    assert [tuple(o.shape) for o in outs] == [(1, 64, h, w) for h, w in sizes]
    assert all((o >= 0).all() for o in outs)  # final ReLU


def test_context_module_branches():
    ctx = ContextModule([8, 16], 32, num_levels=2).eval()
    blk = ctx.blocks[1]
    assert blk.conv3x3.conv.in_channels == 16 and blk.conv3x3.conv.out_channels == 16
    assert blk.conv5x5_1.conv.out_channels == 8 and blk.conv7x7_3.conv.out_channels == 8
    assert not blk.conv3x3.with_activation and not blk.conv5x5_2.with_activation
    assert not blk.conv7x7_3.with_activation
    assert blk.conv5x5_1.activate.negative_slope == 0.1
    assert blk.conv7x7_2.activate.negative_slope == 0.1
    assert ContextModule(256, 256).blocks[0].conv5x5_1.activate.negative_slope == 0.0
    # separate weights per level
    assert ctx.blocks[0].conv5x5_2.conv.weight is not ctx.blocks[1].conv5x5_2.conv.weight
    x = torch.randn(1, 16, 9, 7)
    with torch.no_grad():
        out = ctx((torch.randn(1, 8, 5, 5), x))[1]
        b1 = blk.conv5x5_1(x)
        expected = torch.cat([blk.conv3x3(x), blk.conv5x5_2(b1), blk.conv7x7_3(blk.conv7x7_2(b1))],
                             dim=1).relu()
    assert torch.allclose(out, expected, atol=1e-6)


def test_context_module_bad_args():
    with pytest.raises(ValueError, match='multiple of 4'):
        ContextModule(64, 30)
    with pytest.raises(ValueError, match='num_levels'):
        ContextModule([64, 64], 64, num_levels=3)
    with pytest.raises(ValueError, match='num_levels=3'):
        ContextModule(8, 8)(_feats(SQUARE_SIZES[:2], channels=(8, 8)))


def test_context_module_dcn():
    ops = pytest.importorskip('mmcv.ops', reason='mmcv was built without ops (no DCNv2)')
    ctx = ContextModule(16, 16, num_levels=2, use_dcn=True)
    convs = [m.conv for blk in ctx.blocks for m in blk.children()]
    assert len(convs) == 10
    assert all(isinstance(c, ops.ModulatedDeformConv2dPack) for c in convs)
    # mmcv 2.1 (built with ops) has CPU kernels for modulated deform conv: forward + backward
    feats = (torch.randn(2, 16, 10, 9), torch.randn(2, 16, 5, 5))
    outs = ctx.train()(feats)
    assert [tuple(o.shape) for o in outs] == [(2, 16, 10, 9), (2, 16, 5, 5)]
    sum(o.sum() for o in outs).backward()
    blk = ctx.blocks[0]
    assert blk.conv7x7_3.conv.weight.grad is not None
    assert blk.conv7x7_3.conv.conv_offset.weight.grad is not None
    # offset convs have no counterpart in the reference weights
    keys = ctx.state_dict().keys()
    assert 'blocks.0.conv3x3.conv.conv_offset.weight' in keys
    assert ctx_names.mmdet_to_reference_key('blocks.0.conv3x3.conv.conv_offset.weight', '') \
        is None


class _RefLayout(nn.Module):
    """backbone + neck list as an mmdet detector holds them (``neck`` is nn.Sequential)."""

    def __init__(self):
        super().__init__()
        self.backbone = MobileNetV1()
        self.neck = nn.Sequential(RetinaFaceFPN([64, 128, 256], 64), ContextModule(64, 64))

    def forward(self, x):
        return self.neck(self.backbone(x))


def _ref_to_ours(key):
    for fn in (lambda k: mbv1_names.reference_to_mmdet_key(k, 'body.', 'backbone.'),
               lambda k: fpn_names.reference_to_mmdet_key(k, 'neck.0.'),
               lambda k: ctx_names.reference_to_mmdet_key(k, 'neck.1.')):
        new = fn(key)
        if new is not None:
            return new
    return None


def test_name_maps():
    assert fpn_names.fpn_reference_name_map(3) == {
        'lateral_convs.0': 'fpn.output1', 'lateral_convs.1': 'fpn.output2',
        'lateral_convs.2': 'fpn.output3', 'merge_convs.0': 'fpn.merge1',
        'merge_convs.1': 'fpn.merge2'}
    cmap = ctx_names.context_reference_name_map(3)
    assert len(cmap) == 15 and cmap['blocks.2.conv7x7_3'] == 'ssh3.conv7x7_3'
    assert cmap['blocks.0.conv5x5_1'] == 'ssh1.conv5X5_1'
    # every sub-module named in the maps exists
    fpn, ctx = RetinaFaceFPN([64, 128, 256], 64), ContextModule(64, 64)
    fpn_mods, ctx_mods = dict(fpn.named_modules()), dict(ctx.named_modules())
    assert all(k in fpn_mods for k in fpn_names.fpn_reference_name_map(3))
    assert all(k in ctx_mods for k in cmap)
    # key-level functions agree with the maps
    assert fpn_names.reference_to_mmdet_key('fpn.merge2.1.running_mean', '') == \
        'merge_convs.1.bn.running_mean'
    assert ctx_names.reference_to_mmdet_key('ssh3.conv7x7_3.0.weight', 'neck.1.') == \
        'neck.1.blocks.2.conv7x7_3.conv.weight'
    assert fpn_names.reference_to_mmdet_key('ssh1.conv3X3.0.weight') is None
    assert ctx_names.reference_to_mmdet_key('fpn.output1.0.weight') is None
    assert ctx_names.reference_to_mmdet_key('ssh1.conv9X9.0.weight') is None


@requires_shared(*REF_PTH)
def test_reference_weights_map_onto_backbone_and_necks():
    ref = torch.load(shared_path(*REF_PTH), map_location='cpu', weights_only=True)
    ref = {k: v for k, v in ref.items() if k.startswith(('body.', 'fpn.', 'ssh'))}
    assert len(ref) == 162 + 30 + 90
    mapped = {_ref_to_ours(k): v for k, v in ref.items()}
    assert None not in mapped
    model = _RefLayout()
    ours = model.state_dict()
    assert set(mapped) == set(ours)
    for k, v in mapped.items():
        assert v.shape == ours[k].shape, k
    # the inverse maps give back the reference names
    for k in ours:
        if k.startswith('neck.0.'):
            back = fpn_names.mmdet_to_reference_key(k, 'neck.0.')
        elif k.startswith('neck.1.'):
            back = ctx_names.mmdet_to_reference_key(k, 'neck.1.')
        else:
            continue
        assert back in ref and _ref_to_ours(back) == k

    model.load_state_dict(mapped, strict=True)
    model.eval()
    x = torch.randn(1, 3, 333, 517) * 50
    with torch.no_grad():
        out1 = model(x)
        out2 = model(x)
    assert [tuple(o.shape) for o in out1] == [(1, 64, h, w) for h, w in ODD_SIZES]
    for a, b in zip(out1, out2):
        assert torch.equal(a, b)
        assert torch.isfinite(a).all() and (a >= 0).all() and a.abs().sum() > 0
    assert torch.equal(model.neck[1].blocks[2].conv7x7_3.bn.running_var,
                       ref['ssh3.conv7x7_3.1.running_var'])


def _stock_retinanet_config():
    import mmdet
    from mmengine.config import Config
    path = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', 'retinanet',
                    'retinanet_r18_fpn_1x_coco.py')
    if not osp.exists(path):
        pytest.skip(f'the installed mmdet has no stock configs ({path} missing)')
    return Config.fromfile(path)


def test_context_module_inside_stock_retinanet():
    from mmdet.structures import DetDataSample
    from mmengine.registry import init_default_scope
    from mmengine.structures import InstanceData

    init_default_scope('mmdet')  # as the Runner does for a stock config
    cfg = _stock_retinanet_config()
    model_cfg = cfg.model
    model_cfg.backbone.init_cfg = None  # no download; weights stay random
    model_cfg.neck = [
        model_cfg.neck,
        dict(type='ContextModule', in_channels=256, out_channels=256, num_levels=5)
    ]
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    assert isinstance(model.neck, nn.Sequential)
    assert isinstance(model.neck[1], ContextModule)
    model.train()

    samples = []
    for boxes, labels in (([[8., 10., 40., 44.], [30., 5., 60., 30.]], [0, 3]),
                          ([[20., 20., 52., 60.]], [7])):
        sample = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64),
                                             scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(bboxes=torch.tensor(boxes),
                                           labels=torch.tensor(labels))
        samples.append(sample)
    # two images: BN in training mode needs more than one value per channel at the 1x1 levels
    data = dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(2)],
                data_samples=samples)
    data = model.data_preprocessor(data, training=True)
    feats = model.extract_feat(data['inputs'])
    assert [tuple(f.shape[-2:]) for f in feats] == [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    assert all(f.shape[1] == 256 and (f >= 0).all() for f in feats)

    losses = model(**data, mode='loss')
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v)
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total) and total > 0
    total.backward()
    grad = model.neck[1].blocks[0].conv3x3.conv.weight.grad
    assert grad is not None and grad.abs().sum() > 0
