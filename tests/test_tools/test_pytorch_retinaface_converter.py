"""Tests of tools/model_converters/pytorch_retinaface_to_mmdet.py.

The reference layouts are written out here independently of the converter (from the reference
implementation's module structure: torchvision ResNet-50 body, FPN, SSH, 1x1 heads), so a wrong
name mapping cannot pass by being its own inverse.
"""
import argparse
import subprocess
from collections import OrderedDict

import pytest
import torch

from tests.fixtures_weights import CONVERTER, MNET_PTH, converter_module
from tests.helpers import PYTHON, requires_shared, shared_path

BN_PARAMS = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')


def _bn(prefix, c):
    return [(f'{prefix}.{p}', () if p == 'num_batches_tracked' else (c, )) for p in BN_PARAMS]


def _conv_bn(prefix, cout, cin, k, groups=1):
    return [(f'{prefix}.0.weight', (cout, cin // groups, k, k))] + _bn(f'{prefix}.1', cout)


def reference_layout(arch):
    """[(key, shape)] of the reference RetinaFace state dict (mobilenet0.25_Final.pth /
    Resnet50_Final.pth), without the 'module.' prefix."""
    layout = []
    if arch == 'r50':
        # torchvision ResNet-50 up to layer4 (IntermediateLayerGetter drops avgpool and fc)
        layout += [('body.conv1.weight', (64, 3, 7, 7))] + _bn('body.bn1', 64)
        inplanes = 64
        for layer, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), 1):
            for b in range(blocks):
                p = f'body.layer{layer}.{b}'
                layout += [(f'{p}.conv1.weight', (planes, inplanes, 1, 1))]
                layout += _bn(f'{p}.bn1', planes)
                layout += [(f'{p}.conv2.weight', (planes, planes, 3, 3))] + _bn(f'{p}.bn2', planes)
                layout += [(f'{p}.conv3.weight', (planes * 4, planes, 1, 1))]
                layout += _bn(f'{p}.bn3', planes * 4)
                if b == 0:
                    layout += [(f'{p}.downsample.0.weight', (planes * 4, inplanes, 1, 1))]
                    layout += _bn(f'{p}.downsample.1', planes * 4)
                inplanes = planes * 4
        in_channels, c = (512, 1024, 2048), 256
    else:
        # MobileNetV1 x0.25: conv_bn then depthwise-separable blocks
        widths = ((8, 2), (16, 1), (32, 2), (32, 1), (64, 2), (64, 1)), ((128, 2), ) + (
            (128, 1), ) * 5, ((256, 2), (256, 1))
        cin = 3
        for s, stage in enumerate(widths, 1):
            for b, (cout, _) in enumerate(stage):
                p = f'body.stage{s}.{b}'
                if s == 1 and b == 0:
                    layout += [(f'{p}.0.weight', (cout, cin, 3, 3))] + _bn(f'{p}.1', cout)
                else:
                    layout += [(f'{p}.0.weight', (cin, 1, 3, 3))] + _bn(f'{p}.1', cin)
                    layout += [(f'{p}.3.weight', (cout, cin, 1, 1))] + _bn(f'{p}.4', cout)
                cin = cout
        in_channels, c = (64, 128, 256), 64
    for i, cin in enumerate(in_channels, 1):
        layout += _conv_bn(f'fpn.output{i}', c, cin, 1)
    layout += _conv_bn('fpn.merge1', c, c, 3) + _conv_bn('fpn.merge2', c, c, 3)
    for i in (1, 2, 3):
        layout += _conv_bn(f'ssh{i}.conv3X3', c // 2, c, 3)
        layout += _conv_bn(f'ssh{i}.conv5X5_1', c // 4, c, 3)
        for name in ('conv5X5_2', 'conv7X7_2', 'conv7x7_3'):
            layout += _conv_bn(f'ssh{i}.{name}', c // 4, c // 4, 3)
    for head, n in (('ClassHead', 4), ('BboxHead', 8), ('LandmarkHead', 20)):
        for i in range(3):
            layout += [(f'{head}.{i}.conv1x1.weight', (n, c, 1, 1)),
                       (f'{head}.{i}.conv1x1.bias', (n, ))]
    return layout


def fake_reference(arch, seed=0):
    """A reference-layout state dict of random tensors (distinct values everywhere)."""
    g = torch.Generator().manual_seed(seed)
    sd = OrderedDict()
    for key, shape in reference_layout(arch):
        if key.endswith('num_batches_tracked'):
            sd[key] = torch.randint(0, 1000, (), generator=g)
        else:
            sd[key] = torch.rand(shape, generator=g) + 0.1
    return sd


@pytest.fixture(scope='module')
def tool():
    return converter_module()


@pytest.mark.parametrize('arch', ['mnet', 'r50'])
def test_round_trip_and_strict_load(tool, arch):
    ref = fake_reference(arch)
    # DataParallel prefix and {'state_dict': ...} wrapper are both accepted
    wrapped = {'state_dict': OrderedDict(('module.' + k, v) for k, v in ref.items())}
    converted = tool.convert_state_dict(wrapped, arch)
    assert len(converted) == len(ref)
    assert all(k.startswith(('backbone.', 'neck.0.', 'neck.1.', 'bbox_head.'))
               for k in converted)

    model = tool.build_model(arch)
    assert list(converted) == list(model.state_dict())
    model.load_state_dict(converted, strict=True)

    back = tool.mmdet_to_reference_state_dict(converted, arch)
    assert set(back) == set(ref)
    for key, value in ref.items():
        assert torch.equal(back[key], value), key
    assert tool.detect_arch(wrapped) == arch


@pytest.mark.parametrize('arch', ['mnet', 'r50'])
def test_named_tensors_land_where_expected(tool, arch):
    ref = fake_reference(arch, seed=1)
    sd = tool.convert_state_dict(ref, arch)
    body = 'body.layer3.0.downsample.1.running_var' if arch == 'r50' else 'body.stage2.3.4.bias'
    ours = ('backbone.layer3.0.downsample.1.running_var'
            if arch == 'r50' else 'backbone.stage2.3.4.bias')
    assert torch.equal(sd[ours], ref[body])
    assert torch.equal(sd['neck.0.lateral_convs.2.conv.weight'], ref['fpn.output3.0.weight'])
    assert torch.equal(sd['neck.0.merge_convs.1.bn.running_mean'], ref['fpn.merge2.1.running_mean'])
    assert torch.equal(sd['neck.1.blocks.2.conv7x7_3.bn.weight'], ref['ssh3.conv7x7_3.1.weight'])
    assert torch.equal(sd['neck.1.blocks.0.conv5x5_1.conv.weight'], ref['ssh1.conv5X5_1.0.weight'])
    assert torch.equal(sd['bbox_head.reg_heads.1.weight'], ref['BboxHead.1.conv1x1.weight'])
    assert torch.equal(sd['bbox_head.kpt_heads.2.bias'], ref['LandmarkHead.2.conv1x1.bias'])
    # softmax channels per anchor: reference [bg, face], ours [face, bg]
    for i in range(3):
        w_ref, b_ref = ref[f'ClassHead.{i}.conv1x1.weight'], ref[f'ClassHead.{i}.conv1x1.bias']
        w, b = sd[f'bbox_head.cls_heads.{i}.weight'], sd[f'bbox_head.cls_heads.{i}.bias']
        for anchor in range(2):
            assert torch.equal(w[2 * anchor], w_ref[2 * anchor + 1])  # face
            assert torch.equal(w[2 * anchor + 1], w_ref[2 * anchor])  # background
            assert b[2 * anchor] == b_ref[2 * anchor + 1]
            assert b[2 * anchor + 1] == b_ref[2 * anchor]


def test_softmax_of_swapped_head_equals_reference_face_probability(tool):
    ref = fake_reference('mnet', seed=2)
    sd = tool.convert_state_dict(ref, 'mnet')
    x = torch.randn(1, 64, 5, 7)
    w_ref, b_ref = ref['ClassHead.0.conv1x1.weight'], ref['ClassHead.0.conv1x1.bias']
    out_ref = torch.nn.functional.conv2d(x, w_ref, b_ref).permute(0, 2, 3, 1).reshape(-1, 2)
    w, b = sd['bbox_head.cls_heads.0.weight'], sd['bbox_head.cls_heads.0.bias']
    out = torch.nn.functional.conv2d(x, w, b).permute(0, 2, 3, 1).reshape(-1, 2)
    torch.testing.assert_close(out.softmax(-1)[:, 0], out_ref.softmax(-1)[:, 1])


def test_refuses_mismatching_source_naming_tensors(tool, tmp_path, capsys):
    ref = fake_reference('mnet')
    src = tmp_path / 'mnet.pth'
    torch.save(ref, src)
    dst = tmp_path / 'out.pth'
    assert tool.main([str(src), str(dst), '--arch', 'r50']) == 1
    err = capsys.readouterr().err
    assert 'Refusing to convert' in err
    assert 'missing tensors' in err and 'body.layer1.0.conv1.weight' in err
    assert 'unexpected tensors' in err and 'body.stage1.0.0.weight' in err
    assert not dst.exists()

    bad = OrderedDict(ref)
    bad['fpn.merge1.0.weight'] = torch.zeros(64, 64, 1, 1)
    bad['extra.fc.weight'] = torch.zeros(3)
    del bad['ssh2.conv3X3.1.bias']
    with pytest.raises(ValueError) as e:
        tool.convert_state_dict(bad, 'mnet')
    msg = str(e.value)
    assert 'fpn.merge1.0.weight: source (64, 64, 1, 1) vs model (64, 64, 3, 3)' in msg
    assert 'extra.fc.weight' in msg and 'ssh2.conv3X3.1.bias' in msg
    with pytest.raises(ValueError, match='arch must be one of'):
        tool.convert_state_dict(ref, 'r101')
    with pytest.raises(ValueError, match='cannot tell the architecture'):
        tool.detect_arch({'fpn.output1.0.weight': torch.zeros(1)})


def test_legacy_pickle_fallback_and_weights_only_flag(tool, tmp_path, capsys):
    src = tmp_path / 'legacy.pth'
    # a Namespace is refused by weights-only loading
    torch.save({'state_dict': fake_reference('mnet'), 'args': argparse.Namespace(lr=1e-3)}, src)
    dst = tmp_path / 'out.pth'
    assert tool.main([str(src), str(dst), '--weights-only']) == 1
    assert 'weights-only' in capsys.readouterr().err and not dst.exists()
    assert tool.main([str(src), str(dst)]) == 0
    assert 'weights_only=False' in capsys.readouterr().err
    assert torch.load(dst, weights_only=True)['meta']['arch'] == 'mnet'


def test_cli_from_other_cwd_r50(tool, tmp_path):
    ref = fake_reference('r50', seed=3)
    src = tmp_path / 'Resnet50_Final.pth'
    torch.save(OrderedDict(('module.' + k, v) for k, v in ref.items()), src)
    dst = tmp_path / 'sub' / 'r50.pth'
    work = tmp_path / 'elsewhere'
    work.mkdir()
    proc = subprocess.run([PYTHON, str(CONVERTER), str(src), str(dst), '--arch', 'r50'],
                          cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert 'strict=True' in proc.stdout and 'configs/retinaface_r50_reference.py' in proc.stdout
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'}
    assert ckpt['meta']['dataset_meta'] == {'classes': ('face', )}
    back = tool.mmdet_to_reference_state_dict(ckpt['state_dict'], 'r50')
    assert set(back) == set(ref)
    assert all(torch.equal(back[k], v) for k, v in ref.items())


def test_r50_reference_model_runs_like_the_reference(tool):
    """configs/retinaface_r50_reference.py: C3-C5 of ResNet-50 -> 256-ch FPN / context (plain
    ReLU as the reference uses above 64 channels) -> 2 anchors per cell at strides 8/16/32."""
    model = tool.build_model('r50')
    model.load_state_dict(tool.convert_state_dict(fake_reference('r50', seed=4), 'r50'))
    assert model.neck[0].lateral_convs[0].activate.negative_slope == 0
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        feats = model.backbone(x)
        assert [tuple(f.shape[1:]) for f in feats] == [(512, 12, 16), (1024, 6, 8), (2048, 3, 4)]
        cls_scores, bbox_preds, kpt_preds, _ = model.bbox_head(model.neck(feats))
    assert [tuple(c.shape[1:]) for c in cls_scores] == [(4, 12, 16), (4, 6, 8), (4, 3, 4)]
    assert [b.size(1) for b in bbox_preds] == [8] * 3 and [k.size(1) for k in kpt_preds] == [20] * 3
    assert model.data_preprocessor.mean.flatten().tolist() == [104.0, 117.0, 123.0]


@requires_shared(*MNET_PTH)
def test_convert_real_mobilenet_weights(tool, tmp_path):
    dst = tmp_path / 'mnet.pth'
    proc = subprocess.run([PYTHON, str(CONVERTER), str(shared_path(*MNET_PTH)), str(dst)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert 'Read 300 tensors' in proc.stdout and '(arch mnet)' in proc.stdout
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    sd = ckpt['state_dict']
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    assert ckpt['meta']['dataset_meta']['classes'] == ('face', )

    src = torch.load(shared_path(*MNET_PTH), map_location='cpu', weights_only=True)
    assert [(k, tuple(v.shape)) for k, v in src.items()] == reference_layout('mnet')
    assert len(sd) == len(src)
    pairs = {
        'body.stage1.0.0.weight': 'backbone.stage1.0.0.weight',
        'body.stage3.1.4.running_var': 'backbone.stage3.1.4.running_var',
        'fpn.output2.1.weight': 'neck.0.lateral_convs.1.bn.weight',
        'ssh1.conv7X7_2.0.weight': 'neck.1.blocks.0.conv7x7_2.conv.weight',
        'BboxHead.0.conv1x1.bias': 'bbox_head.reg_heads.0.bias',
        'LandmarkHead.1.conv1x1.weight': 'bbox_head.kpt_heads.1.weight',
    }
    for ref_key, key in pairs.items():
        assert torch.equal(sd[key], src[ref_key]), key
    w_ref = src['ClassHead.2.conv1x1.weight']
    assert torch.equal(sd['bbox_head.cls_heads.2.weight'], w_ref[[1, 0, 3, 2]])
    model = tool.build_model('mnet')
    model.load_state_dict(sd, strict=True)
