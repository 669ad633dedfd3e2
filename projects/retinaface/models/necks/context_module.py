"""The context module of RetinaFace (SSH-style), applied to every pyramid level.

Per level (separate weights per level), with ``C = out_channels``::

    a  = conv3x3(x)                      3x3, C/2, norm, no act
    b1 = conv5x5_1(x)                    3x3, C/4, norm + LeakyReLU
    b  = conv5x5_2(b1)                   3x3, C/4, norm, no act      (5x5 receptive field)
    c  = conv7x7_3(conv7x7_2(b1))        3x3 C/4 norm+act, 3x3 C/4 norm   (7x7 receptive field)
    out = ReLU(cat([a, b, c], dim=1))    C channels

It is a plain neck taking and returning a tuple of feature maps, so it can follow any neck in an
mmdet detector: ``neck=[dict(type='FPN', ...), dict(type='ContextModule', ...)]`` (mmengine
builds a list of necks as ``nn.Sequential``).

With ``use_dcn=True`` all five convolutions are mmcv modulated deformable convolutions
(``conv_cfg=dict(type='DCNv2')``, ``ModulatedDeformConv2dPack``); mmcv 2.1 built with ops runs them
on CPU and GPU (forward and backward). Their offset/mask convolutions are zero-initialised by
mmcv (zero offsets, modulation mask sigmoid(0) = 0.5).

Reference-name mapping (published ``mobilenet0.25_Final.pth``, ``use_dcn=False``)::

    ours (inside the detector: '<prefix>' + key)   reference
    blocks.{i}.conv3x3.conv.weight                  ssh{i+1}.conv3X3.0.weight
    blocks.{i}.conv3x3.bn.{weight,bias,...}         ssh{i+1}.conv3X3.1.{...}
    blocks.{i}.conv5x5_1.{conv|bn}.*                ssh{i+1}.conv5X5_1.{0|1}.*
    blocks.{i}.conv5x5_2.{conv|bn}.*                ssh{i+1}.conv5X5_2.{0|1}.*
    blocks.{i}.conv7x7_2.{conv|bn}.*                ssh{i+1}.conv7X7_2.{0|1}.*
    blocks.{i}.conv7x7_3.{conv|bn}.*                ssh{i+1}.conv7x7_3.{0|1}.*

Level ``i = 0`` is the finest. :data:`CONTEXT_REFERENCE_NAMES`, :func:`context_reference_name_map`,
:func:`mmdet_to_reference_key` and :func:`reference_to_mmdet_key` implement it. With DCN the extra
``*.conv.conv_offset.*`` parameters have no reference counterpart.
"""
import re
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor

from .retinaface_fpn import CONV_MODULE_REFERENCE_NAMES, reference_slope

#: Branch names in :class:`ContextModule` blocks -> reference SSH names (note the reference's
#: mixed case, ``conv7x7_3`` is lower case there).
CONTEXT_REFERENCE_NAMES = {
    'conv3x3': 'conv3X3',
    'conv5x5_1': 'conv5X5_1',
    'conv5x5_2': 'conv5X5_2',
    'conv7x7_2': 'conv7X7_2',
    'conv7x7_3': 'conv7x7_3',
}
_REF_TO_OURS = {v: k for k, v in CONTEXT_REFERENCE_NAMES.items()}
_REF_LAYER_TO_CONV_MODULE = {v: k for k, v in CONV_MODULE_REFERENCE_NAMES.items()}


def context_reference_name_map(num_levels: int = 3) -> Dict[str, str]:
    """Sub-module names of :class:`ContextModule` -> reference sub-module names.

    Example: ``{'blocks.0.conv3x3': 'ssh1.conv3X3', ..., 'blocks.2.conv7x7_3':
    'ssh3.conv7x7_3'}`` (5 entries per level); inside each, ``conv`` -> ``0`` and ``bn`` -> ``1``
    (:data:`CONV_MODULE_REFERENCE_NAMES`).
    """
    return {
        f'blocks.{i}.{ours}': f'ssh{i + 1}.{ref}'
        for i in range(num_levels) for ours, ref in CONTEXT_REFERENCE_NAMES.items()
    }


def mmdet_to_reference_key(key: str, src_prefix: str = 'neck.') -> Optional[str]:
    """Map a :class:`ContextModule` state-dict key to the reference key (None if no counterpart).

    Args:
        key (str): Key in our model, e.g. ``'neck.1.blocks.0.conv5x5_1.bn.running_var'``.
        src_prefix (str): Prefix of the ContextModule in our model (e.g. ``'neck.1.'`` when it
            follows ``RetinaFaceFPN`` in a neck list, ``''`` for the bare module).

    Returns:
        str | None: e.g. ``'ssh1.conv5X5_1.1.running_var'``.
    """
    if not key.startswith(src_prefix):
        return None
    m = re.fullmatch(r'blocks\.(\d+)\.(\w+?)\.(conv|bn)\.(\w+)', key[len(src_prefix):])
    if m is None or m.group(2) not in CONTEXT_REFERENCE_NAMES:
        return None
    idx, branch, layer, param = m.groups()
    return (f'ssh{int(idx) + 1}.{CONTEXT_REFERENCE_NAMES[branch]}.'
            f'{CONV_MODULE_REFERENCE_NAMES[layer]}.{param}')


def reference_to_mmdet_key(key: str, dst_prefix: str = 'neck.') -> Optional[str]:
    """Map a reference ``sshN.*`` key to the :class:`ContextModule` key (None if not SSH).

    ``'ssh2.conv7X7_2.0.weight'`` -> ``dst_prefix + 'blocks.1.conv7x7_2.conv.weight'``.
    """
    m = re.fullmatch(r'ssh(\d+)\.(\w+?)\.([01])\.(\w+)', key)
    if m is None or m.group(2) not in _REF_TO_OURS:
        return None
    num, branch, layer, param = m.groups()
    return (f'{dst_prefix}blocks.{int(num) - 1}.{_REF_TO_OURS[branch]}.'
            f'{_REF_LAYER_TO_CONV_MODULE[layer]}.{param}')


class ContextBlock(nn.Module):
    """The context module of one pyramid level (see the module docstring).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels (divisible by 4).
        conv_cfg (dict, optional): Convolution config (``dict(type='DCNv2')`` for DCN).
        norm_cfg (dict): Norm config.
        act_cfg (dict, optional): Activation after ``conv5x5_1`` and ``conv7x7_2``.
    """

    def __init__(self, in_channels: int, out_channels: int, conv_cfg: Optional[dict],
                 norm_cfg: Optional[dict], act_cfg: Optional[dict]) -> None:
        super().__init__()

        def conv(cin, cout, act):
            return ConvModule(cin, cout, 3, padding=1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                              act_cfg=act)

        quarter = out_channels // 4
        self.conv3x3 = conv(in_channels, out_channels // 2, None)
        self.conv5x5_1 = conv(in_channels, quarter, act_cfg)
        self.conv5x5_2 = conv(quarter, quarter, None)
        self.conv7x7_2 = conv(quarter, quarter, act_cfg)
        self.conv7x7_3 = conv(quarter, quarter, None)

    def forward(self, x: Tensor) -> Tensor:
        """Concatenate the 3x3, 5x5 and 7x7 branches and apply ReLU."""
        a = self.conv3x3(x)
        b1 = self.conv5x5_1(x)
        b = self.conv5x5_2(b1)
        c = self.conv7x7_3(self.conv7x7_2(b1))
        return F.relu(torch.cat([a, b, c], dim=1))


@MODELS.register_module()
class ContextModule(BaseModule):
    """RetinaFace context module (SSH) on every level of a multi-level feature tuple.

    Usable as a neck (alone or after another neck in a neck list) of any mmdet detector. Each
    level has its own :class:`ContextBlock` (``self.blocks[i]``); output level ``i`` has
    ``out_channels`` channels and the spatial size of input level ``i``.

    Args:
        in_channels (int | Sequence[int]): Input channels, one int for all levels or one per
            level.
        out_channels (int): Output channels of every level; must be divisible by 4 (branches
            of ``out/2``, ``out/4``, ``out/4`` channels).
        num_levels (int): Number of pyramid levels. Default: 3.
        use_dcn (bool): Use mmcv modulated deformable convolutions (``DCNv2``) in all branches.
            Default: False.
        norm_cfg (dict): Norm config. Default: dict(type='BN').
        act_cfg (dict, optional): Activation inside the 5x5/7x7 branches; None for none. A
            ``LeakyReLU`` without ``negative_slope`` gets the reference value (0.1 if
            ``out_channels <= 64`` else 0). The final ReLU is always applied.
            Default: dict(type='LeakyReLU').
        init_cfg (dict | list[dict], optional): Initialization config. Default: None (mmcv
            ConvModule's Kaiming initialization; DCN offsets zero).
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 out_channels: int,
                 num_levels: int = 3,
                 use_dcn: bool = False,
                 norm_cfg: Optional[dict] = dict(type='BN'),  # noqa: B006 (copied)
                 act_cfg: Optional[dict] = dict(type='LeakyReLU'),  # noqa: B006 (copied)
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(num_levels, int) or num_levels < 1:
            raise ValueError(f'num_levels must be a positive int, got {num_levels!r}')
        if isinstance(in_channels, int):
            in_channels = [in_channels] * num_levels
        in_channels = list(in_channels)
        if len(in_channels) != num_levels:
            raise ValueError(f'in_channels {in_channels} must have num_levels={num_levels} '
                             'entries')
        if not isinstance(out_channels, int) or out_channels <= 0 or out_channels % 4:
            raise ValueError(
                f'out_channels must be a positive multiple of 4, got {out_channels!r}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_levels = num_levels
        self.use_dcn = use_dcn
        conv_cfg = None
        if use_dcn:
            try:
                import mmcv.ops  # noqa: F401  (registers 'DCNv2')
            except ImportError as e:  # pragma: no cover - depends on the mmcv build
                raise ImportError('ContextModule(use_dcn=True) needs mmcv built with ops '
                                  '(mmcv.ops.ModulatedDeformConv2dPack)') from e
            conv_cfg = dict(type='DCNv2', deform_groups=1)
        if act_cfg is not None:
            act_cfg = dict(act_cfg)
            if act_cfg['type'] == 'LeakyReLU':
                act_cfg.setdefault('negative_slope', reference_slope(out_channels))
        self.act_cfg = act_cfg
        self.blocks = nn.ModuleList([
            ContextBlock(c, out_channels, conv_cfg, norm_cfg, act_cfg) for c in in_channels
        ])

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Apply the per-level context blocks to a tuple of feature maps."""
        if len(inputs) != self.num_levels:
            raise ValueError(f'ContextModule was built for num_levels={self.num_levels} but got '
                             f'{len(inputs)} feature maps')
        return tuple(block(x) for block, x in zip(self.blocks, inputs))
