"""Convert checkpoints of the widely used PyTorch RetinaFace implementation to this project.

Usage (from any directory)::

    python tools/model_converters/pytorch_retinaface_to_mmdet.py \\
        ../shared/weights/mobilenet0.25_Final.pth checkpoints/retinaface_mnet025_reference.pth \\
        --arch mnet
    python tools/model_converters/pytorch_retinaface_to_mmdet.py \\
        Resnet50_Final.pth checkpoints/retinaface_r50_reference.pth --arch r50

The sources are the released ``.pth`` files of biubug6/Pytorch_Retinaface: plain state dicts,
possibly with a ``module.`` prefix (saved from ``nn.DataParallel``) or wrapped in
``{'state_dict': ...}``. Their layout and our names:

=================================  ==========================================================
reference                          ours (configs/retinaface_mnet025_fpn.py for ``mnet``,
                                   configs/retinaface_r50_reference.py for ``r50``)
=================================  ==========================================================
``body.stage{1,2,3}.*`` (mnet)     ``backbone.stage{1,2,3}.*`` (:class:`MobileNetV1`)
``body.{conv1,bn1,layer1-4}.*``    ``backbone.{conv1,bn1,layer1-4}.*`` (mmdet ``ResNet``,
(r50, torchvision ResNet-50)       same names incl. ``downsample.0/1``)
``fpn.output{i}/merge{i}.{0,1}.*`` ``neck.0.lateral_convs/merge_convs.{i-1}.{conv,bn}.*``
``ssh{i}.<branch>.{0,1}.*``        ``neck.1.blocks.{i-1}.<branch>.{conv,bn}.*``
``ClassHead.{i}.conv1x1.*``        ``bbox_head.cls_heads.{i}.*`` (channels swapped, below)
``BboxHead.{i}.conv1x1.*``         ``bbox_head.reg_heads.{i}.*``
``LandmarkHead.{i}.conv1x1.*``     ``bbox_head.kpt_heads.{i}.*``
=================================  ==========================================================

The reference softmax classifier orders the two channels of each anchor ``[background, face]``,
mmdet's ``[face, background]``: the converter swaps them in ``ClassHead`` weights and biases.

The result must equal the state dict of the model built from the config key for key and shape
for shape (it is also loaded with ``load_state_dict(strict=True)``); otherwise the file is
refused, naming the missing and unexpected tensors and the shape mismatches, and nothing is
written. The output is an mmengine checkpoint ``{'state_dict': ..., 'meta': {'dataset_meta':
{'classes': ('face',)}, ...}}`` of tensors and plain Python values only, so it loads with
weights-only loading (``init_detector``, ``FaceInferencer``, ``load_from``).

Loading the source: the file is read with ``torch.load(weights_only=True)`` first (the released
weights are plain state dicts of tensors, which that accepts). Only if that refuses the file is
it read again with ``torch.load(map_location='cpu', weights_only=False)`` - which can execute
code stored in the pickle - and only here, for the file the user asked to convert; pass
``--weights-only`` to forbid that fallback.

Python API (used by other tools)::

    from tools.model_converters.pytorch_retinaface_to_mmdet import convert_state_dict
    state_dict = convert_state_dict(reference_state_dict, 'mnet')
"""
import argparse
import os
import os.path as osp
import pickle
import re
import sys
from collections import OrderedDict
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

#: Architecture -> the config (relative to the repository root) the converted weights fit.
ARCH_CONFIGS = {
    'mnet': 'configs/retinaface_mnet025_fpn.py',
    'r50': 'configs/retinaface_r50_reference.py',
}
#: Reference head module name -> our head sub-module name.
HEAD_NAMES = {'ClassHead': 'cls_heads', 'BboxHead': 'reg_heads', 'LandmarkHead': 'kpt_heads'}
_HEAD_TO_REF = {v: k for k, v in HEAD_NAMES.items()}
#: Prefixes of the three necks / head / backbone in our detector.
FPN_PREFIX = 'neck.0.'
CONTEXT_PREFIX = 'neck.1.'
HEAD_PREFIX = 'bbox_head.'
BACKBONE_PREFIX = 'backbone.'
_RESNET_KEY = re.compile(r'(conv1|bn1|layer[1-4])\..+')


class ConversionError(ValueError):
    """The source checkpoint does not match the target architecture."""


def _check_arch(arch: str) -> str:
    if arch not in ARCH_CONFIGS:
        raise ValueError(f'arch must be one of {sorted(ARCH_CONFIGS)}, got {arch!r}')
    return arch


def config_path(arch: str) -> str:
    """Absolute path of the config whose model the ``arch`` weights fit."""
    return osp.join(REPO_ROOT, ARCH_CONFIGS[_check_arch(arch)])


def build_model(arch: str) -> torch.nn.Module:
    """Build (without initialising weights) the detector of :func:`config_path` in eval mode."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import projects.retinaface  # noqa: F401  (registers the modules)

    init_default_scope('mmdet')
    cfg = Config.fromfile(config_path(arch))
    return MODELS.build(cfg.model).eval()


@lru_cache(maxsize=None)
def _expected_shapes(arch: str) -> Tuple[Tuple[str, Tuple[int, ...]], ...]:
    return tuple((k, tuple(v.shape)) for k, v in build_model(arch).state_dict().items())


def expected_shapes(arch: str) -> 'OrderedDict[str, Tuple[int, ...]]':
    """Key -> shape of the target model's state dict, in its order (cached per arch)."""
    return OrderedDict(_expected_shapes(_check_arch(arch)))


def swap_softmax_channels(tensor: torch.Tensor) -> torch.Tensor:
    """Swap the two softmax channels of every anchor of a classifier conv weight / bias.

    ``(A*2, ...)`` ordered ``[bg, face] * A`` <-> ``[face, bg] * A``; its own inverse.
    """
    if tensor.size(0) % 2:
        raise ConversionError(f'a 2-class softmax classifier needs an even number of output '
                              f'channels, got shape {tuple(tensor.shape)}')
    a = tensor.size(0) // 2
    return tensor.reshape(a, 2, *tensor.shape[1:])[:, [1, 0]].reshape(tensor.shape).contiguous()


def unwrap_state_dict(src) -> Dict[str, torch.Tensor]:
    """Return the plain state dict of a loaded source: unwraps ``{'state_dict': ...}`` /
    ``{'model': ...}`` and strips a ``module.`` prefix that every key carries."""
    if not isinstance(src, dict):
        raise ConversionError(f'the source holds a {type(src).__name__}, not a state dict')
    for wrapper in ('state_dict', 'model'):
        if isinstance(src.get(wrapper, None), dict):
            src = src[wrapper]
            break
    if src and all(isinstance(k, str) and k.startswith('module.') for k in src):
        src = OrderedDict((k[len('module.'):], v) for k, v in src.items())
    return src


def reference_to_mmdet_key(key: str, arch: str) -> Optional[str]:
    """Our key for one reference key (``module.`` already stripped); None if it has none."""
    from projects.retinaface.models.backbones.mobilenet_v1 import (
        reference_to_mmdet_key as backbone_key,
    )
    from projects.retinaface.models.necks.context_module import (
        reference_to_mmdet_key as context_key,
    )
    from projects.retinaface.models.necks.retinaface_fpn import reference_to_mmdet_key as fpn_key

    if key.startswith('body.'):
        if arch == 'mnet':
            return backbone_key(key, 'body.', BACKBONE_PREFIX)
        rest = key[len('body.'):]
        return BACKBONE_PREFIX + rest if _RESNET_KEY.fullmatch(rest) else None
    if key.startswith('fpn.'):
        return fpn_key(key, FPN_PREFIX)
    if key.startswith('ssh'):
        return context_key(key, CONTEXT_PREFIX)
    m = re.fullmatch(r'(ClassHead|BboxHead|LandmarkHead)\.(\d+)\.conv1x1\.(weight|bias)', key)
    if m is not None:
        head, idx, param = m.groups()
        return f'{HEAD_PREFIX}{HEAD_NAMES[head]}.{int(idx)}.{param}'
    return None


def mmdet_to_reference_key(key: str, arch: str) -> Optional[str]:
    """Inverse of :func:`reference_to_mmdet_key` (reference key without ``module.``)."""
    from projects.retinaface.models.necks.context_module import (
        mmdet_to_reference_key as context_key,
    )
    from projects.retinaface.models.necks.retinaface_fpn import mmdet_to_reference_key as fpn_key

    _check_arch(arch)
    if key.startswith(BACKBONE_PREFIX):
        rest = key[len(BACKBONE_PREFIX):]
        if arch == 'mnet':
            ok = rest.startswith(('stage1.', 'stage2.', 'stage3.'))
        else:
            ok = _RESNET_KEY.fullmatch(rest) is not None
        return 'body.' + rest if ok else None
    if key.startswith(FPN_PREFIX):
        return fpn_key(key, FPN_PREFIX)
    if key.startswith(CONTEXT_PREFIX):
        return context_key(key, CONTEXT_PREFIX)
    m = re.fullmatch(r'bbox_head\.(cls_heads|reg_heads|kpt_heads)\.(\d+)\.(weight|bias)', key)
    if m is not None:
        head, idx, param = m.groups()
        return f'{_HEAD_TO_REF[head]}.{idx}.conv1x1.{param}'
    return None


def _mismatch_report(arch: str, missing: List[str], unexpected: List[str],
                     mismatched: List[str]) -> str:
    lines = [f'the source does not match the {arch!r} architecture '
             f'({ARCH_CONFIGS[arch]}); nothing was converted:']
    if missing:
        lines.append(f'  missing tensors ({len(missing)}): {", ".join(missing)}')
    if unexpected:
        lines.append(f'  unexpected tensors ({len(unexpected)}): {", ".join(unexpected)}')
    if mismatched:
        lines.append(f'  shape mismatches ({len(mismatched)}): {"; ".join(mismatched)}')
    return '\n'.join(lines)


def convert_state_dict(src_state_dict: dict, arch: str) -> 'OrderedDict[str, torch.Tensor]':
    """Convert a reference RetinaFace state dict to the state dict of our detector.

    Args:
        src_state_dict (dict): The reference state dict (``module.``-prefixed or not, or a
            checkpoint dict wrapping it in ``'state_dict'``).
        arch (str): ``'mnet'`` (MobileNet-0.25, ``configs/retinaface_mnet025_fpn.py``) or
            ``'r50'`` (ResNet-50, ``configs/retinaface_r50_reference.py``).

    Returns:
        OrderedDict[str, Tensor]: Keys, order and shapes exactly those of the model built from
        the config; classifier channels swapped to mmdet's ``[face, background]``.

    Raises:
        ConversionError: (a ``ValueError``) when keys or shapes do not match, naming the
            missing (reference names), unexpected (source names) and mismatched tensors.
    """
    _check_arch(arch)
    src = unwrap_state_dict(src_state_dict)
    expected = expected_shapes(arch)
    converted = OrderedDict()
    src_names = {}
    unexpected = []
    for key, value in src.items():
        new_key = reference_to_mmdet_key(key, arch)
        if new_key is None or new_key not in expected:
            unexpected.append(key)
            continue
        if not isinstance(value, torch.Tensor):
            raise ConversionError(f'source entry {key!r} is a {type(value).__name__}, '
                                  'not a tensor')
        value = value.detach().to('cpu').clone().contiguous()
        if key.startswith('ClassHead.'):
            value = swap_softmax_channels(value)
        converted[new_key] = value
        src_names[new_key] = key
    missing = [mmdet_to_reference_key(k, arch) or k for k in expected if k not in converted]
    mismatched = [
        f'{src_names[k]}: source {tuple(v.shape)} vs model {expected[k]} ({k})'
        for k, v in converted.items() if tuple(v.shape) != expected[k]
    ]
    if missing or unexpected or mismatched:
        raise ConversionError(_mismatch_report(arch, missing, unexpected, mismatched))
    return OrderedDict((k, converted[k]) for k in expected)


def mmdet_to_reference_state_dict(state_dict: dict,
                                  arch: str) -> 'OrderedDict[str, torch.Tensor]':
    """Inverse conversion: our detector's state dict -> the reference layout (no prefix).

    Raises:
        ConversionError: when a key has no reference counterpart.
    """
    out = OrderedDict()
    for key, value in state_dict.items():
        ref = mmdet_to_reference_key(key, arch)
        if ref is None:
            raise ConversionError(f'{key!r} has no counterpart in the reference {arch!r} model')
        out[ref] = swap_softmax_channels(value) if ref.startswith('ClassHead.') else value
    return out


def detect_arch(src_state_dict: dict) -> str:
    """``'mnet'`` or ``'r50'`` from the backbone keys of a reference state dict."""
    keys = list(unwrap_state_dict(src_state_dict))
    if any(k.startswith('body.stage1.') for k in keys):
        return 'mnet'
    if any(k.startswith('body.layer1.') for k in keys):
        return 'r50'
    raise ConversionError('cannot tell the architecture: the source has neither body.stage1.* '
                          '(MobileNet-0.25) nor body.layer1.* (ResNet-50) keys; pass --arch')


def load_reference_checkpoint(path: str, allow_unsafe: bool = True):
    """Read a reference ``.pth``: weights-only first; see the module docstring for the
    ``weights_only=False`` fallback (``allow_unsafe``)."""
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_unsafe:
            raise ConversionError(
                f'{path} is not loadable with weights-only loading ({err}); rerun without '
                '--weights-only only if you trust the file') from err
        print(f'WARNING: {path} holds more than tensors; loading it with weights_only=False '
              '(this executes code stored in the file: convert only files you trust)',
              file=sys.stderr)
        return torch.load(path, map_location='cpu', weights_only=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description='Convert a Pytorch_Retinaface (biubug6) checkpoint (mobilenet0.25_Final.pth '
        'or Resnet50_Final.pth) into an mmdet checkpoint for this project.')
    parser.add_argument('src', help='reference checkpoint (.pth state dict)')
    parser.add_argument('dst', help='output checkpoint (.pth)')
    parser.add_argument('--arch', choices=sorted(ARCH_CONFIGS), default=None,
                        help='mnet (MobileNet-0.25) or r50 (ResNet-50); default: detected '
                        'from the keys')
    parser.add_argument('--weights-only', action='store_true',
                        help='never fall back to weights_only=False when reading SRC')
    args = parser.parse_args(argv)
    if not osp.isfile(args.src):
        parser.error(f'source checkpoint not found: {args.src}')

    try:
        src = load_reference_checkpoint(args.src, allow_unsafe=not args.weights_only)
        src_sd = unwrap_state_dict(src)
        arch = args.arch or detect_arch(src_sd)
        state_dict = convert_state_dict(src_sd, arch)
    except ConversionError as e:
        print(f'Refusing to convert {args.src}: {e}', file=sys.stderr)
        return 1

    model = build_model(arch)
    model.load_state_dict(state_dict, strict=True)

    meta = dict(
        dataset_meta=dict(classes=('face', )),
        converted_from=osp.basename(args.src),
        converter=osp.basename(__file__),
        arch=arch,
        config=ARCH_CONFIGS[arch])
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save({'state_dict': state_dict, 'meta': meta}, args.dst)

    groups = OrderedDict((p, 0) for p in (BACKBONE_PREFIX, FPN_PREFIX, CONTEXT_PREFIX,
                                          HEAD_PREFIX))
    for k in state_dict:
        groups[next(p for p in groups if k.startswith(p))] += 1
    num_params = sum(v.numel() for k, v in state_dict.items()
                     if not k.endswith('num_batches_tracked'))
    print(f'Read {len(src_sd)} tensors from {args.src} (arch {arch})')
    print('Converted: ' + ', '.join(f'{p}* {n}' for p, n in groups.items()) +
          f' = {len(state_dict)} tensors ({num_params} values)')
    print('Swapped the [background, face] softmax channels of ClassHead.* to [face, background]')
    print(f'Loaded into the model of {ARCH_CONFIGS[arch]} with strict=True')
    print(f'Saved {args.dst} (loads with torch.load(weights_only=True)); use it with '
          f'{ARCH_CONFIGS[arch]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
