#!/usr/bin/env python
"""Parameters and FLOPs of a detector at a fixed input size (mmdet's ``get_flops.py`` convention).

Example::

    python tools/analysis_tools/get_flops.py configs/retinaface_mnet025_fpn.py          # 640x480
    python tools/analysis_tools/get_flops.py configs/retinaface_r50_fpn.py --shape 640   # 640x640

``--shape H W`` (or one number for a square) is the network input, padded up to the data
preprocessor's ``pad_size_divisor`` like the real input. FLOPs are counted by
``mmengine.analysis.get_model_complexity_info`` (a jit trace of ``model(x, mode='tensor')``: the
backbone, necks and head outputs, without anchor decoding, NMS or the data preprocessor), one
fused multiply-add counted as one FLOP as in mmdet's tables. Operators the counter does not know
(mmcv deformable convolutions, for example) are reported as skipped and counted as zero.
Building the model never loads weights (no ``init_weights``), so no download is needed.
"""
import argparse
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from torch import nn  # noqa: E402

VGA_SHAPE = (480, 640)  # (H, W): 640 x 480


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Get the parameters and FLOPs of a detector')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        default=list(VGA_SHAPE),
        help='input size H W, or one number for a square (default: 480 640, i.e. VGA 640x480)')
    parser.add_argument(
        '--show-table', action='store_true', help='print the per-module table as well')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, key=value (see tools/train.py)')
    args = parser.parse_args(argv)
    if len(args.shape) == 1:
        args.shape = [args.shape[0]] * 2
    if len(args.shape) != 2 or min(args.shape) < 1:
        parser.error(f'--shape takes one or two positive integers (H W), got {args.shape}')
    return args


class _TensorForward(nn.Module):
    """Expose ``detector(x, mode='tensor')`` as ``forward(x)`` for the jit-based counter."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, inputs):
        return self.detector(inputs, mode='tensor')


def padded_shape(shape, divisor):
    """``(H, W)`` rounded up to a multiple of ``divisor`` (as ``DetDataPreprocessor`` pads)."""
    if not divisor or divisor <= 1:
        return tuple(shape)
    return tuple(int((s + divisor - 1) // divisor * divisor) for s in shape)


def build_model(cfg):
    """Build ``cfg.model`` in eval mode on the CPU (registers ``projects.retinaface``)."""
    from mmdet.registry import MODELS
    from mmengine.model import revert_sync_batchnorm

    import projects.retinaface  # noqa: F401  (registers the plugin)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.eval()
    return model


def get_flops(cfg, shape=VGA_SHAPE, show_table=False):
    """Return ``dict(input_shape, pad_shape, flops, params, table)`` of ``cfg.model`` at ``shape``.

    ``flops`` counts multiply-adds of the tensor forward at the padded input ``pad_shape``;
    ``params`` counts every parameter of the detector.
    """
    from mmengine.analysis import get_model_complexity_info
    model = build_model(cfg)
    divisor = getattr(model.data_preprocessor, 'pad_size_divisor', 1)
    pad = padded_shape(shape, divisor)
    inputs = torch.zeros(1, 3, *pad)
    with torch.no_grad():
        out = get_model_complexity_info(
            _TensorForward(model),
            inputs=(inputs, ),
            show_table=show_table,
            show_arch=False)
    return dict(
        input_shape=tuple(shape),
        pad_shape=pad,
        flops=int(out['flops']),
        params=int(sum(p.numel() for p in model.parameters())),
        table=out['out_table'])


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file {args.config!r} does not exist')
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    res = get_flops(cfg, tuple(args.shape), args.show_table)
    from mmengine.analysis.print_helper import _format_size
    split_line = '=' * 30
    if res['table']:
        print(res['table'])
    if res['pad_shape'] != res['input_shape']:
        print(f'{split_line}\nUse size divisor set input shape from {res["input_shape"]} '
              f'to {res["pad_shape"]}')
    print(f'{split_line}\nCompute type: direct: a {res["pad_shape"][0]}x{res["pad_shape"][1]} '
          f'(HxW) input tensor\nInput shape: {res["pad_shape"]}\n'
          f'Flops: {_format_size(res["flops"])} ({res["flops"] / 1e9:.3f} GFLOPs)\n'
          f'Params: {_format_size(res["params"])} ({res["params"] / 1e6:.3f} M)\n{split_line}')
    print('!!!Please be cautious if you use the results in papers. '
          'You may need to check if all ops are supported and verify '
          'that the flops computation is correct.')
    return res


if __name__ == '__main__':
    main()
