"""The FPN of the reference RetinaFace implementation.

It differs from mmdet's ``FPN``: the lateral 1x1 convolutions carry BN + LeakyReLU, the coarsest
level has no 3x3 output convolution, and every finer level is ``merge(lateral + up(coarser))``
where the merged map (not the plain sum) is what is upsampled for the next finer level.

Reference-name mapping (3 levels, published ``mobilenet0.25_Final.pth``)::

    ours (inside the detector: '<prefix>' + key)     reference
    lateral_convs.{i}.conv.weight                     fpn.output{i+1}.0.weight
    lateral_convs.{i}.bn.{weight,bias,running_*,...}  fpn.output{i+1}.1.{...}
    merge_convs.{i}.conv.weight                       fpn.merge{i+1}.0.weight
    merge_convs.{i}.bn.{...}                          fpn.merge{i+1}.1.{...}

Level ``i = 0`` is the finest (stride 8); ``merge_convs`` has one entry fewer than
``lateral_convs`` (the coarsest level is not merged). :data:`CONV_MODULE_REFERENCE_NAMES`,
:func:`fpn_reference_name_map`, :func:`mmdet_to_reference_key` and
:func:`reference_to_mmdet_key` implement it.
"""
import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor

#: Sub-module names inside an mmcv ``ConvModule`` (conv + BN) -> index in the reference
#: ``nn.Sequential(Conv2d, BatchNorm2d, LeakyReLU)``.
CONV_MODULE_REFERENCE_NAMES = {'conv': '0', 'bn': '1'}
_REF_LAYER_TO_CONV_MODULE = {v: k for k, v in CONV_MODULE_REFERENCE_NAMES.items()}


def reference_slope(out_channels: int) -> float:
    """LeakyReLU slope used by the reference necks: 0.1 if ``out_channels <= 64`` else 0."""
    return 0.1 if out_channels <= 64 else 0.0


def fpn_reference_name_map(num_levels: int = 3) -> Dict[str, str]:
    """Sub-module names of :class:`RetinaFaceFPN` -> reference sub-module names.

    Example (3 levels): ``{'lateral_convs.0': 'fpn.output1', ..., 'lateral_convs.2':
    'fpn.output3', 'merge_convs.0': 'fpn.merge1', 'merge_convs.1': 'fpn.merge2'}``.
    """
    names = {f'lateral_convs.{i}': f'fpn.output{i + 1}' for i in range(num_levels)}
    names.update({f'merge_convs.{i}': f'fpn.merge{i + 1}' for i in range(num_levels - 1)})
    return names


def mmdet_to_reference_key(key: str, src_prefix: str = 'neck.') -> Optional[str]:
    """Map a :class:`RetinaFaceFPN` state-dict key to the reference key (None if not an FPN key).

    Args:
        key (str): Key in our model, e.g. ``'neck.0.lateral_convs.1.bn.weight'``.
        src_prefix (str): Prefix of the FPN in our model (``'neck.'`` for a single neck,
            ``'neck.0.'`` when it is the first of a list of necks, ``''`` for the bare module).

    Returns:
        str | None: e.g. ``'fpn.output2.1.weight'``.
    """
    if not key.startswith(src_prefix):
        return None
    m = re.fullmatch(r'(lateral_convs|merge_convs)\.(\d+)\.(conv|bn)\.(.+)', key[len(src_prefix):])
    if m is None:
        return None
    kind, idx, layer, param = m.groups()
    ref = 'output' if kind == 'lateral_convs' else 'merge'
    return f'fpn.{ref}{int(idx) + 1}.{CONV_MODULE_REFERENCE_NAMES[layer]}.{param}'


def reference_to_mmdet_key(key: str, dst_prefix: str = 'neck.') -> Optional[str]:
    """Map a reference ``fpn.*`` key to the :class:`RetinaFaceFPN` key (None if not an FPN key).

    ``'fpn.merge1.0.weight'`` -> ``dst_prefix + 'merge_convs.0.conv.weight'``.
    """
    m = re.fullmatch(r'fpn\.(output|merge)(\d+)\.([01])\.(.+)', key)
    if m is None:
        return None
    kind, num, layer, param = m.groups()
    ours = 'lateral_convs' if kind == 'output' else 'merge_convs'
    return f'{dst_prefix}{ours}.{int(num) - 1}.{_REF_LAYER_TO_CONV_MODULE[layer]}.{param}'


@MODELS.register_module()
class RetinaFaceFPN(BaseModule):
    """Feature pyramid of the reference RetinaFace implementation.

    For levels ``0..L-1`` (fine to coarse), with ``lat_i = lateral_convs[i](x_i)``::

        out_{L-1} = lat_{L-1}
        out_i     = merge_convs[i](lat_i + nearest_upsample(out_{i+1}, size=lat_i.shape[-2:]))

    Laterals are 1x1 conv + norm + act, merges 3x3 conv + norm + act; upsampling goes to the
    exact lateral size, so odd input sizes work.

    Args:
        in_channels (Sequence[int]): Channels of each input level, fine to coarse.
        out_channels (int): Channels of every output level.
        conv_cfg (dict, optional): Config of the convolutions. Default: None (Conv2d).
        norm_cfg (dict): Config of the norm layers. Default: dict(type='BN').
        act_cfg (dict, optional): Config of the activations; None for no activation. A
            ``LeakyReLU`` without ``negative_slope`` gets the reference value (0.1 if
            ``out_channels <= 64`` else 0). Default: dict(type='LeakyReLU').
        init_cfg (dict | list[dict], optional): Initialization config. Default: None (mmcv
            ConvModule's own Kaiming initialization).
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: int,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN'),  # noqa: B006 (copied)
                 act_cfg: Optional[dict] = dict(type='LeakyReLU'),  # noqa: B006 (copied)
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if isinstance(in_channels, int) or len(in_channels) < 1:
            raise ValueError(
                f'in_channels must be a non-empty list of ints, got {in_channels!r}')
        if not isinstance(out_channels, int) or out_channels <= 0:
            raise ValueError(f'out_channels must be a positive int, got {out_channels!r}')
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_levels = len(self.in_channels)
        if act_cfg is not None:
            act_cfg = dict(act_cfg)
            if act_cfg['type'] == 'LeakyReLU':
                act_cfg.setdefault('negative_slope', reference_slope(out_channels))
        self.act_cfg = act_cfg

        self.lateral_convs = nn.ModuleList([
            ConvModule(c, out_channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                       act_cfg=act_cfg) for c in self.in_channels
        ])
        self.merge_convs = nn.ModuleList([
            ConvModule(out_channels, out_channels, 3, padding=1, conv_cfg=conv_cfg,
                       norm_cfg=norm_cfg, act_cfg=act_cfg) for _ in range(self.num_levels - 1)
        ])

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Fuse backbone features (tuple fine -> coarse) into a tuple fine -> coarse."""
        if len(inputs) != self.num_levels:
            raise ValueError(f'RetinaFaceFPN was built for {self.num_levels} levels '
                             f'(in_channels={self.in_channels}) but got {len(inputs)} inputs')
        laterals: List[Tensor] = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        outs = [None] * self.num_levels
        outs[-1] = laterals[-1]
        for i in range(self.num_levels - 2, -1, -1):
            up = F.interpolate(outs[i + 1], size=laterals[i].shape[-2:], mode='nearest')
            outs[i] = self.merge_convs[i](laterals[i] + up)
        return tuple(outs)
