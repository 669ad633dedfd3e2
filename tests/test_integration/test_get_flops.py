"""tools/analysis_tools/get_flops.py: parameters and FLOPs at a given input size."""
import pytest
import torch
from mmengine.config import Config

from tests.helpers import REPO_ROOT
from tests.test_integration import load_tool

get_flops = load_tool('tools/analysis_tools/get_flops.py')
MNET = str(REPO_ROOT / 'configs' / 'retinaface_mnet025_fpn.py')


def conv_linear_macs(model, shape):
    """Multiply-adds of every Conv2d / Linear in the tensor forward, counted with hooks."""
    total = [0]

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total[0] += output.numel() * k
        elif isinstance(module, torch.nn.Linear):
            total[0] += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(torch.zeros(1, 3, *shape), mode='tensor')
    for h in handles:
        h.remove()
    return total[0]


def test_args():
    args = get_flops.parse_args([MNET])
    assert args.shape == [480, 640]  # VGA, H W
    assert get_flops.parse_args([MNET, '--shape', '320']).shape == [320, 320]
    with pytest.raises(SystemExit):
        get_flops.parse_args([MNET, '--shape', '1', '2', '3'])
    assert get_flops.padded_shape((100, 130), 32) == (128, 160)
    assert get_flops.padded_shape((96, 128), 32) == (96, 128)
    assert get_flops.padded_shape((97, 5), 1) == (97, 5)


def test_mnet_params_and_flops():
    cfg = Config.fromfile(MNET)
    res = get_flops.get_flops(cfg, (100, 130))
    assert res['input_shape'] == (100, 130) and res['pad_shape'] == (128, 160)
    model = get_flops.build_model(cfg)
    assert res['params'] == sum(p.numel() for p in model.parameters())
    # the published MobileNet-0.25 RetinaFace has 426,608 parameters
    assert res['params'] == 426608
    macs = conv_linear_macs(model, (128, 160))
    # convolutions dominate; batch norms and element-wise ops add a few percent at most
    assert macs <= res['flops'] <= 1.05 * macs
    # FLOPs grow with the input area (same network, 4x the pixels)
    res4 = get_flops.get_flops(cfg, (256, 320))
    assert res4['flops'] == pytest.approx(4 * res['flops'], rel=0.02)
    assert res4['params'] == res['params']


def test_cli_prints(capsys):
    res = get_flops.main([MNET, '--shape', '64', '96'])
    out = capsys.readouterr().out
    assert 'Input shape: (64, 96)' in out
    assert f'{res["params"] / 1e6:.3f} M' in out and 'GFLOPs' in out
    with pytest.raises(FileNotFoundError, match='config file'):
        get_flops.main(['missing_config.py'])
