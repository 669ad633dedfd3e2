"""Tests of tools/model_converters/mobilenetv1_imagenet_to_mmdet.py."""
import subprocess
from collections import OrderedDict

import pytest
import torch
from mmdet.registry import MODELS

from projects.retinaface.models.backbones import MobileNetV1
from tests.helpers import PYTHON, REPO_ROOT, load_script, requires_shared, shared_path

TOOL = REPO_ROOT / 'tools' / 'model_converters' / 'mobilenetv1_imagenet_to_mmdet.py'
SRC = ('weights', 'mobilenetV1X0.25_pretrain.tar')


def _tool():
    return load_script(TOOL, 'mobilenetv1_imagenet_to_mmdet')


def _fake_source():
    """A source state dict in the reference layout, built from our own backbone."""
    sd = OrderedDict(('module.' + k, v.clone()) for k, v in MobileNetV1().state_dict().items())
    sd['module.fc.weight'] = torch.randn(1000, 256)
    sd['module.fc.bias'] = torch.randn(1000)
    return sd


@requires_shared(*SRC)
def test_convert_real_checkpoint_and_load_with_pretrained_init(tmp_path, monkeypatch):
    dst = tmp_path / 'out' / 'mbv1.pth'
    # run from an unrelated directory: the tool must find the repository by itself
    proc = subprocess.run([PYTHON, str(TOOL), str(shared_path(*SRC)), str(dst)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert 'module.fc.weight' in proc.stdout and 'Saved' in proc.stdout

    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'}
    sd = ckpt['state_dict']
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    assert list(sd) == list(MobileNetV1().state_dict())
    assert ckpt['meta']['dropped_keys'] == ['module.fc.weight', 'module.fc.bias']

    # The source tensors, read independently of the converter.
    src = torch.load(shared_path(*SRC), map_location='cpu', weights_only=True)['state_dict']
    for k, v in sd.items():
        assert torch.equal(v, src['module.' + k]), k

    # init_cfg Pretrained, with every torch.load forced to weights_only=True
    real_load = torch.load
    calls = []

    def weights_only_load(*args, **kwargs):
        kwargs['weights_only'] = True
        calls.append(args[0] if args else kwargs.get('f'))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', weights_only_load)
    model = MODELS.build(
        dict(type='MobileNetV1', init_cfg=dict(type='Pretrained', checkpoint=str(dst))))
    model.init_weights()
    assert calls, 'PretrainedInit did not go through torch.load'
    loaded = model.state_dict()
    assert set(loaded) == set(sd)  # no missing / unexpected keys
    for k, v in loaded.items():
        assert torch.equal(v, src['module.' + k]), k


def test_convert_accepts_matching_source_and_drops_classifier():
    tool = _tool()
    src = _fake_source()
    converted, dropped = tool.convert(src)
    assert dropped == ['module.fc.weight', 'module.fc.bias']
    assert list(converted) == list(MobileNetV1().state_dict())
    assert torch.equal(converted['stage2.3.3.weight'], src['module.stage2.3.3.weight'])


def test_convert_refuses_missing_extra_and_misshaped_keys():
    tool = _tool()
    src = _fake_source()
    del src['module.stage3.1.4.running_var']
    with pytest.raises(ValueError, match=r'missing keys \(1\): stage3\.1\.4\.running_var'):
        tool.convert(src)

    src = _fake_source()
    src['module.stage4.0.0.weight'] = torch.zeros(3)
    with pytest.raises(ValueError, match=r'unexpected keys \(1\): stage4\.0\.0\.weight'):
        tool.convert(src)

    src = _fake_source()
    src['module.stage1.0.0.weight'] = torch.zeros(16, 3, 3, 3)
    with pytest.raises(ValueError, match=r'stage1\.0\.0\.weight: source \(16, 3, 3, 3\)'):
        tool.convert(src)


def test_cli_refuses_with_message_and_writes_nothing(tmp_path, capsys):
    tool = _tool()
    src = _fake_source()
    src['module.extra.bias'] = torch.zeros(2)
    del src['module.stage1.2.3.weight']
    bad = tmp_path / 'bad.tar'
    torch.save({'state_dict': src, 'epoch': 1}, bad)
    dst = tmp_path / 'out.pth'
    assert tool.main([str(bad), str(dst)]) == 1
    err = capsys.readouterr().err
    assert 'Refusing' in err and 'stage1.2.3.weight' in err and 'extra.bias' in err
    assert not dst.exists()

    # a well-formed source passes through the CLI and round-trips
    good = tmp_path / 'good.tar'
    torch.save({'state_dict': _fake_source(), 'epoch': 3}, good)
    assert tool.main([str(good), str(dst)]) == 0
    ckpt = torch.load(dst, weights_only=True)
    assert ckpt['meta']['source_epoch'] == 3
    model = MobileNetV1()
    model.load_state_dict(ckpt['state_dict'], strict=True)
