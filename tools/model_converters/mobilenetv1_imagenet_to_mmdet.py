"""Convert the ImageNet-pretrained MobileNetV1 x0.25 of the reference RetinaFace implementation.

Usage::

    python tools/model_converters/mobilenetv1_imagenet_to_mmdet.py \\
        ../shared/weights/mobilenetV1X0.25_pretrain.tar checkpoints/mobilenetv1_x0.25_imagenet.pth

The source (``mobilenetV1X0.25_pretrain.tar``) is a dict with ``state_dict`` keyed
``module.stage1...`` (saved from ``nn.DataParallel``) plus the ImageNet classifier ``module.fc``.
The converter strips ``module.``, drops the classifier (``fc``) and pooling (``avg``) entries,
checks that the remaining keys and shapes equal ``MobileNetV1(widen_factor=0.25).state_dict()``
exactly (refusing otherwise, naming the missing / unexpected keys), and writes an mmengine-style
checkpoint ``{'state_dict': ..., 'meta': ...}`` made only of tensors and plain Python values, so it
loads with ``torch.load(weights_only=True)``. Use it as::

    backbone=dict(type='MobileNetV1', widen_factor=0.25,
                  init_cfg=dict(type='Pretrained', checkpoint='checkpoints/....pth'))

The source is read with ``torch.load(weights_only=True)`` (it holds only tensors and plain values).
"""
import argparse
import os
import os.path as osp
import sys
from collections import OrderedDict

import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

#: Key prefixes of the source that are not part of the backbone and are dropped.
DROPPED_PREFIXES = ('fc.', 'avg.', 'avgpool.')


def _strip(key: str, prefix: str) -> str:
    return key[len(prefix):] if key.startswith(prefix) else key


def expected_state_dict(widen_factor: float = 0.25) -> 'OrderedDict[str, torch.Tensor]':
    """State dict (keys and shapes) of the target ``MobileNetV1``."""
    from projects.retinaface.models.backbones.mobilenet_v1 import MobileNetV1
    return MobileNetV1(widen_factor=widen_factor).state_dict()


def convert(src_state_dict: dict, widen_factor: float = 0.25):
    """Turn the reference ImageNet state dict into a ``MobileNetV1`` state dict.

    Args:
        src_state_dict (dict): The ``state_dict`` of the source checkpoint (``module.``-prefixed
            or not).
        widen_factor (float): Width of the target backbone. Default: 0.25.

    Returns:
        tuple[OrderedDict, list[str]]: The converted state dict (keys as in ``MobileNetV1``)
        and the dropped source keys.

    Raises:
        ValueError: When the remaining keys or shapes do not equal the backbone's, with the
            missing, unexpected and mismatched keys named.
    """
    converted = OrderedDict()
    dropped = []
    for key, value in src_state_dict.items():
        new_key = _strip(key, 'module.')
        if new_key.startswith(DROPPED_PREFIXES):
            dropped.append(key)
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f'source entry {key!r} is a {type(value).__name__}, not a tensor')
        converted[new_key] = value.detach().clone().contiguous()

    expected = expected_state_dict(widen_factor)
    missing = [k for k in expected if k not in converted]
    unexpected = [k for k in converted if k not in expected]
    mismatched = [
        f'{k}: source {tuple(converted[k].shape)} vs model {tuple(expected[k].shape)}'
        for k in expected if k in converted and converted[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        lines = [f'the source does not match MobileNetV1(widen_factor={widen_factor}):']
        if missing:
            lines.append(f'  missing keys ({len(missing)}): {", ".join(missing)}')
        if unexpected:
            lines.append(f'  unexpected keys ({len(unexpected)}): {", ".join(unexpected)}')
        if mismatched:
            lines.append(f'  shape mismatches ({len(mismatched)}): {"; ".join(mismatched)}')
        raise ValueError('\n'.join(lines))
    # keep the backbone's key order
    converted = OrderedDict((k, converted[k]) for k in expected)
    return converted, dropped


def _plain(value):
    """Meta values as plain Python types (weights_only-safe)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert the reference ImageNet MobileNetV1 x0.25 checkpoint '
        '(mobilenetV1X0.25_pretrain.tar) to an mmdet MobileNetV1 backbone checkpoint.')
    parser.add_argument('src', help='source checkpoint (mobilenetV1X0.25_pretrain.tar)')
    parser.add_argument('dst', help='output checkpoint path (.pth)')
    parser.add_argument('--widen-factor', type=float, default=0.25,
                        help='width of the target MobileNetV1 (default 0.25)')
    args = parser.parse_args(argv)

    if not osp.isfile(args.src):
        parser.error(f'source checkpoint not found: {args.src}')
    src = torch.load(args.src, map_location='cpu', weights_only=True)
    if isinstance(src, dict) and 'state_dict' in src:
        src_sd = src['state_dict']
        extra = {k: v for k, v in src.items() if k in ('epoch', 'best_acc1')}
    elif isinstance(src, dict):
        src_sd, extra = src, {}
    else:
        parser.error(f'{args.src} holds a {type(src).__name__}, not a (checkpoint) dict')

    try:
        state_dict, dropped = convert(src_sd, args.widen_factor)
    except ValueError as e:
        print(f'Refusing to convert {args.src}: {e}', file=sys.stderr)
        return 1

    meta = dict(
        converted_from=osp.basename(args.src),
        converter=osp.basename(__file__),
        model=f'MobileNetV1(widen_factor={args.widen_factor})',
        dropped_keys=dropped,
        **{f'source_{k}': _plain(v) for k, v in extra.items()})
    dst_dir = osp.dirname(osp.abspath(args.dst))
    os.makedirs(dst_dir, exist_ok=True)
    torch.save({'state_dict': state_dict, 'meta': meta}, args.dst)

    num_params = sum(v.numel() for k, v in state_dict.items() if 'num_batches_tracked' not in k)
    print(f'Read {len(src_sd)} entries from {args.src}')
    print(f'Stripped "module.", dropped {len(dropped)} classifier/pooling entries: '
          f'{", ".join(dropped) or "none"}')
    print(f'Kept {len(state_dict)} tensors ({num_params} parameters and buffer values), '
          f'matching MobileNetV1(widen_factor={args.widen_factor}).state_dict() exactly')
    print(f'Saved {args.dst} (loads with torch.load(weights_only=True); use it as '
          f"init_cfg=dict(type='Pretrained', checkpoint=...))")
    return 0


if __name__ == '__main__':
    sys.exit(main())
