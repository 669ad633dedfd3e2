"""MobileNetV1 backbone in the layout of the reference RetinaFace implementation.

The published RetinaFace MobileNet-0.25 weights (``mobilenet0.25_Final.pth``) and the ImageNet
pretrained backbone (``mobilenetV1X0.25_pretrain.tar``) store the backbone as three
``nn.Sequential`` stages of plain layers:

* ``stage1.0`` is a full 3x3 convolution block ``[Conv2d, BN, LeakyReLU]`` (indices 0, 1, 2);
* every other block is depthwise separable
  ``[Conv2d 3x3 depthwise, BN, LeakyReLU, Conv2d 1x1, BN, LeakyReLU]`` (indices 0..5).

This module keeps exactly that layout, so the reference keys map onto ours by a pure prefix
rename: ``body.stageX.<rest>`` (RetinaFace checkpoint) or ``module.stageX.<rest>`` (ImageNet
checkpoint) becomes ``stageX.<rest>`` inside this module, i.e. ``backbone.stageX.<rest>`` inside a
detector. :func:`reference_to_mmdet_key` implements the rename.
"""
from typing import Optional, Sequence

import torch.nn as nn
from mmcv.cnn import build_activation_layer, build_conv_layer, build_norm_layer
from mmdet.models.utils import make_divisible
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

#: Prefixes the reference checkpoints put in front of the backbone keys.
REFERENCE_BACKBONE_PREFIXES = {
    'retinaface': 'body.',  # mobilenet0.25_Final.pth
    'imagenet': 'module.',  # mobilenetV1X0.25_pretrain.tar (DataParallel)
}


def reference_to_mmdet_key(key: str, src_prefix: str = 'body.',
                           dst_prefix: str = 'backbone.') -> Optional[str]:
    """Rename one reference backbone key to the name used by :class:`MobileNetV1`.

    The mapping is a pure prefix rename, e.g. ``body.stage1.1.3.weight`` ->
    ``backbone.stage1.1.3.weight``. Keys that do not start with ``src_prefix`` (the classifier
    ``fc``, the heads, ...) are not backbone keys and give ``None``.

    Args:
        key (str): Key of the reference state dict.
        src_prefix (str): Reference prefix; ``'body.'`` for the RetinaFace checkpoint,
            ``'module.'`` for the ImageNet checkpoint.
        dst_prefix (str): Prefix of the backbone in the target model; ``'backbone.'`` inside an
            mmdet detector, ``''`` for a bare :class:`MobileNetV1`.

    Returns:
        str | None: The renamed key, or None when ``key`` is not a backbone stage key.
    """
    if not key.startswith(src_prefix):
        return None
    rest = key[len(src_prefix):]
    if not rest.startswith(('stage1.', 'stage2.', 'stage3.')):
        return None
    return dst_prefix + rest


@MODELS.register_module()
class MobileNetV1(BaseModule):
    """MobileNetV1 backbone as used by RetinaFace (MobileNet-0.25 variant).

    Three stages of a standard MobileNetV1 with LeakyReLU activations; at ``widen_factor=0.25``
    they give 64 channels at stride 8 (``stage1``), 128 at stride 16 (``stage2``) and 256 at
    stride 32 (``stage3``), matching the published RetinaFace weights key for key (see the module
    docstring for the naming). Channels are ``make_divisible(c * widen_factor, 8)`` of the
    MobileNetV1 widths ``[32, 64, 128, 128, 256, 256 | 512 x 6 | 1024 x 2]``.

    Args:
        widen_factor (float): Width multiplier. Only 0.25 matches the released weights.
            Default: 0.25.
        out_indices (Sequence[int]): Indices of the stages (0, 1, 2 for ``stage1..3``) whose
            outputs are returned, in increasing order. Default: (0, 1, 2).
        frozen_stages (int): Number of leading stages to freeze (parameters fixed and norm layers
            in eval mode): ``k`` freezes ``stage1 .. stage{k}``; -1 or 0 freezes nothing.
            Default: -1.
        conv_cfg (dict, optional): Config of the convolution layers. Default: None (Conv2d).
        norm_cfg (dict): Config of the normalization layers. Default: dict(type='BN').
        negative_slope (float): Slope of the LeakyReLU activations. Default: 0.1.
        norm_eval (bool): Keep all BatchNorm layers in eval mode during training (frozen
            running statistics). Default: False.
        init_cfg (dict | list[dict], optional): Initialization config. Default: Kaiming for
            convolutions and constant 1 for norm layers; use
            ``dict(type='Pretrained', checkpoint=...)`` with a checkpoint made by
            ``tools/model_converters/mobilenetv1_imagenet_to_mmdet.py`` for ImageNet weights.
    """

    # (output channels at width 1.0, stride) of the blocks of each stage; the first block of
    # stage1 is a full 3x3 convolution, all others are depthwise separable.
    arch_settings = (
        ((32, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1)),
        ((512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1)),
        ((1024, 2), (1024, 1)),
    )
    #: Stride of the output of each stage.
    strides = (8, 16, 32)

    def __init__(self,
                 widen_factor: float = 0.25,
                 out_indices: Sequence[int] = (0, 1, 2),
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),  # noqa: B006 (copied, never mutated)
                 negative_slope: float = 0.1,
                 norm_eval: bool = False,
                 init_cfg=None) -> None:
        if init_cfg is None:
            init_cfg = [
                dict(type='Kaiming', layer='Conv2d'),
                dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
            ]
        super().__init__(init_cfg=init_cfg)
        if not widen_factor > 0:
            raise ValueError(f'widen_factor must be positive, got {widen_factor}')
        num_stages = len(self.arch_settings)
        out_indices = tuple(out_indices)
        if (len(out_indices) == 0 or any(not 0 <= i < num_stages for i in out_indices)
                or list(out_indices) != sorted(set(out_indices))):
            raise ValueError('out_indices must be a non-empty increasing subset of '
                             f'{tuple(range(num_stages))}, got {out_indices}')
        if frozen_stages not in range(-1, num_stages + 1):
            raise ValueError(f'frozen_stages must be in [-1, {num_stages}], got {frozen_stages}')

        self.widen_factor = widen_factor
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.negative_slope = negative_slope
        self.norm_eval = norm_eval

        in_channels = 3
        self.stage_channels = []
        self.stage_names = []
        for stage_idx, blocks in enumerate(self.arch_settings):
            layers = []
            for block_idx, (channels, stride) in enumerate(blocks):
                out_channels = make_divisible(channels * widen_factor, 8)
                if stage_idx == 0 and block_idx == 0:
                    layers.append(self._conv_bn(in_channels, out_channels, stride))
                else:
                    layers.append(self._conv_dw(in_channels, out_channels, stride))
                in_channels = out_channels
            name = f'stage{stage_idx + 1}'
            self.add_module(name, nn.Sequential(*layers))
            self.stage_names.append(name)
            self.stage_channels.append(in_channels)
        #: Channels of the returned feature maps, in the order of ``out_indices``.
        self.out_channels = [self.stage_channels[i] for i in self.out_indices]
        self._freeze_stages()

    def _layers(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                groups: int = 1) -> list:
        """[conv, norm, LeakyReLU] as plain layers (so indices match the reference keys)."""
        conv = build_conv_layer(
            self.conv_cfg, in_channels, out_channels, kernel_size, stride=stride,
            padding=kernel_size // 2, groups=groups, bias=False)
        _, norm = build_norm_layer(self.norm_cfg, out_channels)
        act = build_activation_layer(
            dict(type='LeakyReLU', negative_slope=self.negative_slope, inplace=True))
        return [conv, norm, act]

    def _conv_bn(self, in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
        """Full 3x3 convolution block (reference ``conv_bn``)."""
        return nn.Sequential(*self._layers(in_channels, out_channels, 3, stride))

    def _conv_dw(self, in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
        """Depthwise separable block (reference ``conv_dw``): 3x3 depthwise then 1x1."""
        return nn.Sequential(
            *self._layers(in_channels, in_channels, 3, stride, groups=in_channels),
            *self._layers(in_channels, out_channels, 1, 1))

    def _freeze_stages(self) -> None:
        for i in range(1, self.frozen_stages + 1):
            stage = getattr(self, f'stage{i}')
            stage.eval()
            for param in stage.parameters():
                param.requires_grad = False

    def forward(self, x):
        """Return the feature maps of the stages in ``out_indices`` (fine to coarse)."""
        if x.dim() != 4 or x.size(1) != 3:
            raise ValueError(f'MobileNetV1 expects an (N, 3, H, W) tensor, got {tuple(x.shape)}')
        outs = []
        for i, name in enumerate(self.stage_names):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
            if i >= self.out_indices[-1]:
                break
        return tuple(outs)

    def train(self, mode: bool = True):
        """Set train mode, keeping frozen stages (and all BN layers if ``norm_eval``) in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
