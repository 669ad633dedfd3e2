"""Tests of the MobileNetV1 backbone (layout of the reference RetinaFace MobileNet-0.25)."""
import math

import pytest
import torch
from mmdet.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from projects.retinaface.models.backbones import MobileNetV1
from projects.retinaface.models.backbones.mobilenet_v1 import reference_to_mmdet_key
from tests.helpers import requires_shared, shared_path

REF_PTH = ('weights', 'mobilenet0.25_Final.pth')


def _down(size, times):
    """Output size of ``times`` 3x3 / stride 2 / padding 1 convolutions."""
    for _ in range(times):
        size = (size + 2 - 3) // 2 + 1
    return size


def _reference_state_dict():
    return torch.load(shared_path(*REF_PTH), map_location='cpu', weights_only=True)


@pytest.mark.parametrize('hw', [(640, 640), (333, 517)])
def test_build_from_registry_shapes_and_strides(hw):
    model = MODELS.build(dict(type='MobileNetV1'))
    assert isinstance(model, MobileNetV1)
    assert model.out_channels == [64, 128, 256]
    model.eval()
    h, w = hw
    with torch.no_grad():
        outs = model(torch.randn(1, 3, h, w))
    assert len(outs) == 3
    for out, channels, stride in zip(outs, (64, 128, 256), model.strides):
        times = int(math.log2(stride))
        assert out.shape == (1, channels, _down(h, times), _down(w, times))
    if hw == (640, 640):
        assert [o.shape[-1] for o in outs] == [80, 40, 20]
    else:  # ceil division at each stride-2 layer
        assert [tuple(o.shape[-2:]) for o in outs] == [(42, 65), (21, 33), (11, 17)]


def test_out_indices_and_widen_factor():
    model = MobileNetV1(out_indices=(1, 2))
    assert model.out_channels == [128, 256]
    with torch.no_grad():
        outs = model.eval()(torch.randn(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(2, 128, 4, 6), (2, 256, 2, 3)]

    wide = MobileNetV1(widen_factor=0.5, out_indices=(0, ))
    assert wide.stage_channels == [128, 256, 512]
    with torch.no_grad():
        outs = wide.eval()(torch.randn(1, 3, 32, 32))
    assert len(outs) == 1 and outs[0].shape == (1, 128, 4, 4)


def test_bad_arguments_and_input():
    with pytest.raises(ValueError, match='out_indices'):
        MobileNetV1(out_indices=(3, ))
    with pytest.raises(ValueError, match='out_indices'):
        MobileNetV1(out_indices=(2, 1))
    with pytest.raises(ValueError, match='frozen_stages'):
        MobileNetV1(frozen_stages=4)
    with pytest.raises(ValueError, match='widen_factor'):
        MobileNetV1(widen_factor=0)
    with pytest.raises(ValueError, match=r'\(N, 3, H, W\)'):
        MobileNetV1()(torch.randn(1, 1, 32, 32))


def test_layout_is_conv_bn_leakyrelu():
    model = MobileNetV1()
    first = model.stage1[0]
    assert [type(m).__name__ for m in first] == ['Conv2d', 'BatchNorm2d', 'LeakyReLU']
    dw = model.stage2[0]
    assert [type(m).__name__ for m in dw] == [
        'Conv2d', 'BatchNorm2d', 'LeakyReLU', 'Conv2d', 'BatchNorm2d', 'LeakyReLU']
    assert dw[0].groups == 64 and dw[0].stride == (2, 2) and dw[3].kernel_size == (1, 1)
    assert all(m.negative_slope == 0.1 for m in model.modules()
               if isinstance(m, torch.nn.LeakyReLU))


@requires_shared(*REF_PTH)
def test_reference_keys_map_by_prefix_rename_and_load():
    ref = _reference_state_dict()
    body = {reference_to_mmdet_key(k, 'body.', ''): v for k, v in ref.items()
            if k.startswith('body.')}
    assert None not in body
    model = MobileNetV1()
    ours = model.state_dict()
    assert list(body) == list(ours)  # same keys, same order
    for k, v in body.items():
        assert v.shape == ours[k].shape, k
    # detector prefix and non-backbone keys
    assert reference_to_mmdet_key('body.stage3.1.4.running_var') == \
        'backbone.stage3.1.4.running_var'
    assert reference_to_mmdet_key('fpn.output1.0.weight') is None
    assert reference_to_mmdet_key('module.fc.weight', 'module.', '') is None

    x = torch.randn(1, 3, 96, 128)
    model.eval()
    with torch.no_grad():
        before = model(x)
    model.load_state_dict(body, strict=True)
    with torch.no_grad():
        out1 = model(x)
        out2 = model(x)
    for a, b, c in zip(out1, out2, before):
        assert torch.equal(a, b)  # deterministic
        assert torch.isfinite(a).all()
        assert not torch.allclose(a, c)  # the loaded weights are used
    # The first conv really holds the reference tensor.
    assert torch.equal(model.stage1[0][0].weight, ref['body.stage1.0.0.weight'])


def test_frozen_stages_get_no_gradients_and_keep_bn_stats():
    model = MobileNetV1(frozen_stages=2)
    model.train()
    for name in ('stage1', 'stage2'):
        stage = getattr(model, name)
        assert all(not p.requires_grad for p in stage.parameters())
        assert all(not m.training for m in stage.modules())
    assert all(p.requires_grad for p in model.stage3.parameters())
    assert model.stage3.training

    stats_before = model.stage1[0][1].running_mean.clone()
    stage3_stats_before = model.stage3[0][1].running_mean.clone()
    outs = model(torch.randn(2, 3, 64, 64))
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is None for p in model.stage1.parameters())
    assert all(p.grad is None for p in model.stage2.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.stage3.parameters())
    assert torch.equal(model.stage1[0][1].running_mean, stats_before)
    assert not torch.equal(model.stage3[0][1].running_mean, stage3_stats_before)


def test_norm_eval_keeps_all_bn_in_eval():
    model = MobileNetV1(norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    before = bns[-1].running_var.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(bns[-1].running_var, before)
    # without norm_eval, training mode updates the statistics
    plain = MobileNetV1().train()
    before = plain.stage3[1][4].running_var.clone()
    plain(torch.randn(2, 3, 64, 64))
    assert not torch.equal(plain.stage3[1][4].running_var, before)
