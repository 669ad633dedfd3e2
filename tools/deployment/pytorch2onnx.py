#!/usr/bin/env python
"""Export a RetinaFace detector to ONNX with dynamic input height / width.

Usage::

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT OUT.onnx \\
        [--shape 640 640] [--opset 17] [--simplify no] [--with-postprocess] \\
        [--pad-channels N] [--no-static-upsample] [--verify]

The graph takes the preprocessed image ``input`` (1, 3, H, W) float32 (BGR minus the mean for
the MobileNet configs, padded to a multiple of 32 - required, the neck upsamples by constant
factors unless ``--no-static-upsample``; H and W are dynamic) and returns, over the
``N`` anchors of that size in mmdet's order (level, then row-major cell, then anchor):

- default: ``scores`` (1, N, C) (softmax / sigmoid applied), ``bbox_deltas`` (1, N, 4) and
  ``kpt_deltas`` (1, N, 2K) - the raw head outputs, flattened. Anchors, decoding and NMS run in
  the numpy post-processor of ``projects/retinaface/apis/onnx_inference.py``, which decodes
  only the anchors above the score threshold (the fastest layout);
- ``--with-postprocess``: ``scores``, ``boxes`` (1, N, 4) and ``keypoints`` (1, N, K, 2)
  decoded inside the graph (anchors built in the graph from the feature map sizes) in
  network-input pixels; the post-processor then only thresholds, clips, rescales and runs NMS.

Detectors with a ``RetinaFaceHead`` or a two-stage ``CascadeRetinaFaceHead`` (the paper's
``configs/retinaface_r50_fpn.py``) export. For a cascade, scores and box / landmark deltas are
stage 2's; stage 1 contributes only its box branch: by default its deltas are a fourth output,
``prior_deltas`` (1, N, 4), from which the post-processor decodes stage 2's priors (the stage-1
boxes of the kept anchors); with ``--with-postprocess`` the graph decodes both stages.

Everything the post-processor needs (anchors, box / landmark coders, test-pipeline resize,
mean / std / padding, ``test_cfg``) is stored as JSON in the model's ``metadata_props``
(key ``retinaface``), so the ``.onnx`` file alone is enough::

    from projects.retinaface.apis.onnx_inference import ONNXFaceDetector
    det = ONNXFaceDetector('retinaface.onnx')
    out = det(cv2.imread('photo.jpg'))   # bboxes, scores, labels, keypoints (original pixels)

The export uses the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``), which
torch 2.13 still ships (deprecated) and which needs no extra package; the dynamo exporter
would need ``onnxscript``. ``--simplify yes`` runs ``onnxsim`` if it is installed.
"""
import argparse
import copy
import os
import os.path as osp
import sys
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import DictAction

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from projects.retinaface.apis.fast_detector import pipeline_resize  # noqa: E402
from projects.retinaface.apis.onnx_inference import (  # noqa: E402
    CASCADE_METADATA_VERSION,
    DECODED_OUTPUTS,
    DELTA_OUTPUTS,
    METADATA_VERSION,
    PRIOR_OUTPUT,
    cpu_flags,
    read_metadata,
    write_metadata,
)


# ---------------------------------------------------------------------------- model
def build_model(config, checkpoint: Optional[str] = None, cfg_options: Optional[dict] = None):
    """Build the detector of ``config`` on CPU in eval mode and load ``checkpoint``
    (random initialisation when None). Returns ``(model, cfg)``."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    import projects.retinaface  # noqa: F401  (registers modules, safe checkpoint loading)
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(config) if isinstance(config, str) else config.copy()
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'init_cfg' in cfg.model.get('backbone', {}):
        cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    if checkpoint is None:
        model.init_weights()
    else:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    model.cfg = cfg
    return model.eval(), cfg


def _check_head(model):
    """``(head, prior_head)``: the head whose scores, boxes and landmarks are exported and,
    for a ``CascadeRetinaFaceHead``, its stage 1, whose box deltas turn the anchors into stage
    2's priors (None for a single-stage ``RetinaFaceHead``)."""
    from projects.retinaface.models.dense_heads import CascadeRetinaFaceHead, RetinaFaceHead
    head = getattr(model, 'bbox_head', None)
    prior_head = None
    if isinstance(head, CascadeRetinaFaceHead):
        prior_head, head = head.stage1, head.stage2
    if not isinstance(head, RetinaFaceHead) or type(head).__name__ != 'RetinaFaceHead':
        raise NotImplementedError(
            f'ONNX export supports detectors with a RetinaFaceHead or CascadeRetinaFaceHead, '
            f'got {type(getattr(model, "bbox_head", None)).__name__}')
    if head.num_vertices > 0:
        raise NotImplementedError('ONNX export of the dense vertex branch is not supported')
    for h in (head, prior_head):
        if h is not None and type(h.bbox_coder).__name__ != 'DeltaXYWHBBoxCoder':
            raise NotImplementedError(
                f'bbox coder {type(h.bbox_coder).__name__} is not supported')
    return head, prior_head


def _coder_meta(coder) -> dict:
    """``DeltaXYWHBBoxCoder`` parameters as stored in the metadata."""
    return dict(
        means=[float(v) for v in coder.means],
        stds=[float(v) for v in coder.stds],
        wh_ratio_clip=16 / 1000,
        clip_border=bool(coder.clip_border),
        add_ctr_clamp=bool(coder.add_ctr_clamp),
        ctr_clamp=float(coder.ctr_clamp))


def _decode_deltas(anchors: torch.Tensor, deltas: torch.Tensor, coder) -> torch.Tensor:
    """``coder``'s decoding (mmdet's ``delta2bbox``, the function ``DeltaXYWHBBoxCoder.decode``
    runs) of (B, N, 4) anchors and deltas, without clipping (the post-processor clips to the
    image)."""
    from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import delta2bbox
    boxes = delta2bbox(anchors.reshape(-1, 4), deltas.reshape(-1, 4), coder.means, coder.stds,
                       max_shape=None, clip_border=coder.clip_border,
                       add_ctr_clamp=coder.add_ctr_clamp, ctr_clamp=coder.ctr_clamp)
    return boxes.reshape(deltas.shape)


def _face_logit_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """A conv whose output channel ``a`` is channel ``2a`` minus channel ``2a + 1`` of
    ``conv`` (face minus background logit of anchor ``a``, mmdet's channel order)."""
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or conv.out_channels % 2:
        raise NotImplementedError(f'cannot fold the classifier {conv}')
    out = nn.Conv2d(conv.in_channels, conv.out_channels // 2, conv.kernel_size, conv.stride,
                    conv.padding, conv.dilation, bias=conv.bias is not None)
    with torch.no_grad():
        out.weight.copy_(conv.weight[0::2] - conv.weight[1::2])
        if conv.bias is not None:
            out.bias.copy_(conv.bias[0::2] - conv.bias[1::2])
    return out.to(conv.weight.device).eval()


class RetinaFaceONNXWrapper(nn.Module):
    """The exported graph: backbone, neck(s) and head, outputs flattened in mmdet's anchor
    order (see the module docstring); ``decoded=True`` also decodes every anchor."""

    def __init__(self, model: nn.Module, decoded: bool = False) -> None:
        super().__init__()
        self.model = model
        self.head, self.prior_head = _check_head(model)
        self.decoded = decoded
        # Two-class softmax: the face probability is sigmoid(l_face - l_background), and the
        # difference of two outputs of a linear conv is one conv with the difference of their
        # weights. The graph runs a copy of the head whose classifiers give that difference
        # directly (A channels instead of 2A: no softmax, slicing or subtraction over every
        # anchor); the user's model is not modified.
        self.score_head = self.head
        self.face_logit = not self.head.use_sigmoid_cls and self.head.cls_out_channels == 2
        if self.face_logit:
            self.score_head = copy.deepcopy(self.head)
            self.score_head.cls_heads = nn.ModuleList(
                _face_logit_conv(conv) for conv in self.head.cls_heads)
        gen = self.head.prior_generator
        self.strides = [tuple(float(v) for v in s) for s in gen.strides]
        for i, base in enumerate(gen.base_anchors):
            self.register_buffer(f'base_anchors_{i}', base.float().clone(), persistent=False)

    def _anchors(self, feat: torch.Tensor, level: int) -> torch.Tensor:
        h, w = feat.shape[-2:]
        sw, sh = self.strides[level]
        xs = torch.arange(w, dtype=torch.float32) * sw
        ys = torch.arange(h, dtype=torch.float32) * sh
        yy, xx = torch.meshgrid(ys, xs, indexing='ij')
        shifts = torch.stack([xx.reshape(-1), yy.reshape(-1)] * 2, dim=-1)
        base = getattr(self, f'base_anchors_{level}')
        return (shifts[:, None, :] + base[None, :, :]).reshape(-1, 4)

    def _prior_deltas(self, feats, n: int) -> torch.Tensor:
        """Stage-1 box deltas (B, N, 4) of a cascade: only its box branch runs."""
        prior = self.prior_head
        # forward_single's other branches have no consumer in the graph: the exporter drops them
        preds = [prior.forward_single(feat, level)[1] for level, feat in enumerate(feats)]
        return prior._flatten(preds, prior.bbox_coder.encode_size, n)

    def forward(self, x: torch.Tensor):
        head = self.score_head
        feats = self.model.extract_feat(x)
        cls_scores, bbox_preds, kpt_preds, _ = head(feats)
        # the batch size read from the input: a Shape of a feature map would make ONNX Runtime
        # convert that whole map out of its internal layout just to read the size
        n = x.shape[0]
        if self.face_logit:
            scores = head._flatten(cls_scores, 1, n).sigmoid()
        elif head.use_sigmoid_cls:
            scores = head._flatten(cls_scores, head.cls_out_channels, n).sigmoid()
        else:
            scores = head._flatten(cls_scores, head.cls_out_channels, n).softmax(-1)[..., :-1]
        deltas = head._flatten(bbox_preds, head.bbox_coder.encode_size, n)
        kpts = head._flatten(kpt_preds, 2 * head.num_keypoints, n) if kpt_preds else None
        prior_deltas = None if self.prior_head is None else self._prior_deltas(feats, n)
        if not self.decoded:
            outs = (scores, deltas) if kpts is None else (scores, deltas, kpts)
            return outs if prior_deltas is None else outs + (prior_deltas, )
        anchors = torch.cat([self._anchors(c, i) for i, c in enumerate(cls_scores)])[None]
        if prior_deltas is not None:  # stage 2's priors: the stage-1 boxes (not clipped)
            anchors = _decode_deltas(anchors, prior_deltas, self.prior_head.bbox_coder)
        boxes = _decode_deltas(anchors, deltas, head.bbox_coder)
        if kpts is None:
            return scores, boxes
        pxy = (anchors[..., :2] + anchors[..., 2:]) * 0.5
        pwh = anchors[..., 2:] - anchors[..., :2]
        k = head.num_keypoints
        var = head.landmark_coder.variance
        points = kpts.reshape(kpts.shape[0], -1, k, 2) * (pwh * var)[:, :, None, :] \
            + pxy[:, :, None, :]
        return scores, boxes, points


# ---------------------------------------------------------------------------- graph passes
_ZERO_PRESERVING = ('Relu', 'LeakyRelu')


def cpu_has_avx512(cpuinfo: str = '/proc/cpuinfo') -> bool:
    """Whether this CPU has AVX-512 (``avx512f`` among the ``flags`` of ``cpuinfo``; False
    where the file cannot be read)."""
    return 'avx512f' in cpu_flags(cpuinfo)


def default_pad_channels() -> int:
    """The ``pad_channels`` default: ONNX Runtime's NCHWc block width on this CPU, 16 with
    AVX-512; 0 (off) otherwise, where the blocks are 8 channels wide and MobileNet-0.25's
    8-channel chain already fits them (padding it to 16 there doubled the work of its first
    three convs: the INT8 network ran 2.6 ms slower at 1024x768, FP32 4.4 ms, on an AVX2
    CPU). The exported graph is tuned for the CPU it is exported on; give ``--pad-channels``
    for another."""
    return 16 if cpu_has_avx512() else 0


def pad_narrow_channels(model, multiple: int = 16) -> List[str]:
    """Widen ``Conv -> act -> depthwise Conv -> act -> Conv`` chains whose width is not a
    multiple of ``multiple`` with all-zero channels, in place; returns the names of the
    widened first convs.

    ONNX Runtime's CPU convolutions work on blocks of 16 channels (NCHWc, AVX-512): an 8-channel
    tensor (MobileNet-0.25's first layers, at half the input resolution) is computed padded to
    16 anyway, and is then reordered back to 8 channels for the next 1x1 conv, which runs in
    the slow plain layout. With the padding in the graph, the whole chain stays blocked: the
    MobileNet-0.25 model ran 5 ms faster at 1920x1080 and 0.4 ms at 640x480 (1 thread, AVX-512
    machine of the README benchmark). The extra channels have zero weights and biases, and
    the activations keep 0 at 0, so they are exactly 0 and every output is unchanged. On AVX2
    CPUs, whose blocks are 8 channels, the padding only doubles the work of these layers
    (``multiple=8`` leaves MobileNet-0.25 as it is), so the export pads only on AVX-512 CPUs
    by default (:func:`default_pad_channels`).
    """
    from onnx import numpy_helper
    if multiple <= 1:
        return []
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    def only_consumer(tensor):
        users = consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in outputs else None

    def group_attr(node):
        return next((a for a in node.attribute if a.name == 'group'), None)

    def groups(node):
        a = group_attr(node)
        return 1 if a is None else a.i

    def constant(name):
        """The value of a tensor that is an initializer (possibly behind Identity nodes: the
        exporter shares equal constants that way), else None."""
        while name not in inits and name in producers and producers[name].op_type == 'Identity':
            name = producers[name].input[0]
        return numpy_helper.to_array(inits[name]) if name in inits else None

    def params(node):
        """(weight, bias or None) of a conv, or None when they are not constants."""
        w = constant(node.input[1]) if len(node.input) > 1 else None
        has_bias = len(node.input) > 2 and node.input[2]
        b = constant(node.input[2]) if has_bias else None
        return None if w is None or (has_bias and b is None) else (w, b)

    def set_param(node, index, array):
        """Point input ``index`` of ``node`` at a new initializer (shared ones stay intact)."""
        name = f'{node.name}_padded_{index}'
        graph.initializer.append(numpy_helper.from_array(array, name))
        node.input[index] = name

    def pad(array, extra, axis):
        width = [(0, 0)] * array.ndim
        width[axis] = (0, extra)
        return np.pad(array, width)

    widened = []
    for first in list(graph.node):
        p1 = params(first) if first.op_type == 'Conv' and groups(first) == 1 else None
        if p1 is None or p1[0].shape[0] % multiple == 0:
            continue
        c = p1[0].shape[0]
        chain = [first]
        for want in ('act', 'Conv', 'act', 'Conv'):
            nxt = only_consumer(chain[-1].output[0])
            if nxt is None or (want == 'act' and nxt.op_type not in _ZERO_PRESERVING) or (
                    want == 'Conv' and nxt.op_type != 'Conv'):
                break
            chain.append(nxt)
        if len(chain) != 5:
            continue
        _, _, dw, _, last = chain
        pd, pl = params(dw), params(last)
        group = group_attr(dw)
        if pd is None or pl is None or group is None or group.i != c or \
                pd[0].shape[:2] != (c, 1) or pl[0].shape[1] != c or groups(last) != 1:
            continue
        extra = (-c) % multiple
        for conv, (w, b) in ((first, p1), (dw, pd)):
            set_param(conv, 1, pad(w, extra, 0))
            if b is not None:
                set_param(conv, 2, pad(b, extra, 0))
        group.i = c + extra
        set_param(last, 1, pad(pl[0], extra, 1))
        widened.append(first.name)
        # shapes recorded for the widened tensors are stale now: let the runtime infer them
        stale = {n.output[0] for n in chain[:4]}
        kept = [v for v in graph.value_info if v.name not in stale]
        del graph.value_info[:]
        graph.value_info.extend(kept)
    if widened:  # drop the constants (and Identity nodes) nothing reads any more
        _remove_unused(graph)
    return widened


def _remove_unused(graph) -> None:
    """Remove, in place, the nodes whose outputs nothing reads (repeatedly) and the unused
    initializers."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def static_upsample_scales(model, sizes: Sequence[Tuple[int, int]], seed: int = 0) -> int:
    """Give nearest-neighbour ``Resize`` nodes whose output size is read from another tensor's
    shape a constant scale instead, in place; returns how many were changed.

    The neck upsamples each level to the size of the level below
    (``F.interpolate(size=...)``), which the graph reads from full feature maps with ``Shape``
    ops; ONNX Runtime then converts those maps out of its internal layout (NCHWc blocks in
    FP32; NHWC, transposed and dequantised, in INT8) only to read their sizes. When every
    input is padded to a multiple of the largest stride (as the metadata's
    ``pad_size_divisor`` makes :class:`ONNXFaceDetector` do), each upsampling is by a constant
    factor. The factors are measured with ONNX Runtime on inputs of the given (padded) sizes,
    which must agree, and the rewritten graph must give exactly the original outputs on them;
    otherwise the model is left as it is (returns 0). An input that is not padded then fails
    with a shape error at the addition that follows instead of running.
    """
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper
    graph = model.graph
    constants = {t.name for t in graph.initializer} | {
        o for n in graph.node if n.op_type == 'Constant' for o in n.output}
    nodes = [
        n for n in graph.node
        if n.op_type == 'Resize' and len(n.input) == 4 and n.input[3]
        and n.input[3] not in constants and any(
            a.name == 'mode' and a.s == b'nearest' for a in n.attribute)
    ]
    if not nodes:
        return 0
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = [t for n in nodes for t in (n.input[0], n.output[0])]
    probe.graph.output.extend(
        onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in names)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), opts,
                                   providers=['CPUExecutionProvider'])
    input_name = graph.input[0].name
    rng = np.random.default_rng(seed)
    inputs = [rng.normal(0, 50, (1, 3, h, w)).astype(np.float32) for h, w in sizes]
    factors, expected = None, []
    n_out = len(graph.output)
    for x in inputs:
        outs = session.run(None, {input_name: x})
        expected.append(outs[:n_out])
        found = []
        for src, dst in zip(outs[n_out::2], outs[n_out + 1::2]):
            if src.shape[:2] != dst.shape[:2] or any(
                    d % s for s, d in zip(src.shape[2:], dst.shape[2:])):
                return 0
            found.append(tuple(d // s for s, d in zip(src.shape[2:], dst.shape[2:])))
        if factors not in (None, found):
            return 0
        factors = found
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    by_name = {n.output[0]: n for n in rewritten.graph.node}
    for k, (node, factor) in enumerate(zip(nodes, factors)):
        name = f'static_upsample_scales_{k}'
        scales = np.asarray((1, 1) + factor, dtype=np.float32)
        rewritten.graph.initializer.append(numpy_helper.from_array(scales, name))
        target = by_name[node.output[0]]
        data, roi = target.input[0], target.input[1]
        del target.input[:]
        target.input.extend([data, roi, name])
    _remove_unused(rewritten.graph)
    session = ort.InferenceSession(rewritten.SerializeToString(), opts,
                                   providers=['CPUExecutionProvider'])
    for x, ref in zip(inputs, expected):
        if not all(np.array_equal(a, b) for a, b in zip(session.run(None, {input_name: x}),
                                                         ref)):
            return 0
    model.CopyFrom(rewritten)
    return len(nodes)


# ---------------------------------------------------------------------------- metadata
def test_resize(cfg) -> Optional[dict]:
    """The resize of the config's test pipeline as stored in the ONNX metadata: None (original
    size) or ``dict(scale=[w, h], keep_ratio=bool)``. The pipeline rules are those of
    :class:`FastFaceDetector` (one fixed-scale ``Resize`` besides loaders and packers); the ONNX
    pre-processing resizes bilinearly, so other interpolations are refused."""
    resize = pipeline_resize(cfg)
    if resize is None:
        return None
    if resize['interpolation'] != 'bilinear':
        raise ValueError(f"Resize interpolation {resize['interpolation']!r} is not supported by "
                         'the ONNX pre-processing (only bilinear)')
    return dict(scale=[int(v) for v in resize['scale']], keep_ratio=resize['keep_ratio'])


def build_metadata(model, cfg, decoded: bool = False) -> dict:
    """JSON-serialisable metadata of the exported model (see ``onnx_inference``)."""
    head, prior_head = _check_head(model)
    dp = model.data_preprocessor
    if getattr(dp, '_enable_normalize', False):
        mean = [float(v) for v in dp.mean.flatten()]
        std = [float(v) for v in dp.std.flatten()]
    else:
        mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    gen = head.prior_generator
    levels = [dict(stride=[float(s[0]), float(s[1])],
                   base_anchors=[[float(v) for v in row] for row in base.tolist()])
              for s, base in zip(gen.strides, gen.base_anchors)]
    tcfg = head.test_cfg
    if tcfg is None:
        raise ValueError('the model has no test_cfg')
    nms_cfg = tcfg.get('nms', None)
    if nms_cfg is not None and nms_cfg.get('type', 'nms') != 'nms':
        raise NotImplementedError(f'NMS type {nms_cfg.get("type")} is not supported')
    classes = list((getattr(model, 'dataset_meta', None) or {}).get('classes', ('face', )))
    meta = dict(
        format_version=METADATA_VERSION if prior_head is None else CASCADE_METADATA_VERSION,
        outputs='decoded' if decoded else 'deltas',
        output_names=output_names(model, decoded),
        num_classes=int(head.num_classes),
        classes=classes,
        levels=levels,
        bbox_coder=_coder_meta(head.bbox_coder),
        landmarks=dict(num_keypoints=int(head.num_keypoints),
                       variance=float(head.landmark_coder.variance))
        if head.with_landmarks else None,
        preprocess=dict(
            resize=test_resize(cfg),
            mean=mean,
            std=std,
            bgr_to_rgb=bool(getattr(dp, '_channel_conversion', False)),
            pad_size_divisor=int(getattr(dp, 'pad_size_divisor', 1)),
            pad_value=float(getattr(dp, 'pad_value', 0))),
        test_cfg=dict(
            score_thr=float(tcfg.get('score_thr', 0.0)),
            nms_pre=int(tcfg.get('nms_pre', -1)),
            iou_threshold=None if nms_cfg is None else float(nms_cfg['iou_threshold']),
            max_per_img=int(tcfg.get('max_per_img', -1)),
            min_bbox_size=float(tcfg.get('min_bbox_size', -1))))
    if prior_head is not None:
        meta['prior_bbox_coder'] = _coder_meta(prior_head.bbox_coder)
    return meta


def output_names(model, decoded: bool = False) -> List[str]:
    """Names of the graph outputs, in order (see the module docstring)."""
    head, prior_head = _check_head(model)
    names = list(DECODED_OUTPUTS if decoded else DELTA_OUTPUTS)
    if not head.with_landmarks:
        names = names[:2]
    if prior_head is not None and not decoded:
        names.append(PRIOR_OUTPUT)
    return names


# ---------------------------------------------------------------------------- export
def export_onnx(model,
                cfg,
                out_file: str,
                shape: Sequence[int] = (640, 640),
                opset: int = 17,
                with_postprocess: bool = False,
                simplify: bool = False,
                pad_channels: Optional[int] = None,
                static_upsample: bool = True) -> str:
    """Export ``model`` (eval mode, CPU) to ``out_file`` with dynamic H / W and the metadata.

    Args:
        shape: (H, W) of the example input used for tracing.
        opset: ONNX opset (11 or more).
        with_postprocess: decode boxes / landmarks of every anchor in the graph.
        simplify: run ``onnxsim`` on the result.
        pad_channels: widen narrow conv chains to a multiple of this many channels
            (:func:`pad_narrow_channels`; 0: off; None: :func:`default_pad_channels`, 16
            on an AVX-512 CPU, else 0).
        static_upsample: when the inputs are padded to a multiple of the largest stride,
            give the neck's upsampling constant scales (:func:`static_upsample_scales`).
    """
    if len(shape) != 2 or min(shape) <= 0:
        raise ValueError(f'shape must be two positive ints (H W), got {shape}')
    if opset < 11:
        raise ValueError(f'opset must be >= 11, got {opset}')
    if pad_channels is None:
        pad_channels = default_pad_channels()
    wrapper = RetinaFaceONNXWrapper(model.eval(), decoded=with_postprocess).eval()
    names = output_names(model, with_postprocess)
    dummy = torch.zeros(1, 3, int(shape[0]), int(shape[1]))
    dynamic_axes = {'input': {2: 'height', 3: 'width'}}
    dynamic_axes.update({n: {1: 'num_anchors'} for n in names})
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with torch.no_grad():
            torch.onnx.export(
                wrapper, (dummy, ),
                out_file,
                dynamo=False,
                opset_version=opset,
                input_names=['input'],
                output_names=names,
                dynamic_axes=dynamic_axes,
                do_constant_folding=True)
    if simplify:
        try:
            import onnxsim
        except ImportError as e:
            raise ImportError('--simplify yes needs onnxsim (pip install onnxsim)') from e
        import onnx
        simplified, ok = onnxsim.simplify(onnx.load(out_file))
        if not ok:
            raise RuntimeError('onnxsim could not validate the simplified model')
        onnx.save(simplified, out_file)
    meta = build_metadata(model, cfg, decoded=with_postprocess)
    divisor = int(meta['preprocess'].get('pad_size_divisor') or 0)
    max_stride = max(max(lv['stride']) for lv in meta['levels'])
    static_upsample = static_upsample and divisor > 0 and divisor % max_stride == 0
    if static_upsample:
        try:
            import onnxruntime  # noqa: F401  (measures the upsampling factors)
        except ImportError:
            warnings.warn('onnxruntime is not installed: the neck keeps upsampling to sizes '
                          'read from the feature maps (slower under ONNX Runtime)', stacklevel=2)
            static_upsample = False
    if (pad_channels and pad_channels > 1) or static_upsample:
        import onnx
        proto = onnx.load(out_file)
        changed = bool(pad_channels and pad_channels > 1
                       and pad_narrow_channels(proto, pad_channels))
        if static_upsample:
            sizes = [(2 * divisor, 3 * divisor), (3 * divisor, 2 * divisor)]
            changed = static_upsample_scales(proto, sizes) > 0 or changed
        if changed:
            onnx.save(proto, out_file)
    write_metadata(out_file, meta)
    return out_file


def verify_onnx(model, onnx_file: str, shapes: Sequence[Tuple[int, int]] = ((640, 640),
                                                                             (480, 352)),
                seed: int = 0) -> List[float]:
    """Max abs difference of every output between PyTorch and ONNX Runtime for random inputs
    of the given (H, W) sizes (checks the dynamic shapes)."""
    import onnxruntime as ort
    meta = read_metadata(onnx_file)
    wrapper = RetinaFaceONNXWrapper(model.eval(), decoded=meta['outputs'] == 'decoded').eval()
    sess = ort.InferenceSession(onnx_file, providers=['CPUExecutionProvider'])
    gen = torch.Generator().manual_seed(seed)
    diffs = []
    for h, w in shapes:
        x = torch.randn(1, 3, h, w, generator=gen) * 50
        with torch.no_grad():
            ref = wrapper(x)
        outs = sess.run(None, {'input': x.numpy()})
        if len(outs) != len(ref):
            raise RuntimeError(f'{len(outs)} ONNX outputs, {len(ref)} PyTorch outputs')
        diffs.append(max(float(np.abs(o - r.numpy()).max()) for o, r in zip(outs, ref)))
    return diffs


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Export a RetinaFace detector to ONNX')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file ("none": random weights)')
    parser.add_argument('out', help='output .onnx file')
    parser.add_argument('--shape', type=int, nargs=2, default=[640, 640], metavar=('H', 'W'),
                        help='example input size used for tracing (H, W stay dynamic)')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset version')
    parser.add_argument('--simplify', choices=['no', 'yes'], default='no',
                        help='run onnxsim on the exported model (needs onnxsim)')
    parser.add_argument('--with-postprocess', action='store_true',
                        help='decode boxes and landmarks of every anchor inside the graph')
    parser.add_argument('--pad-channels', type=int, default=None,
                        help='widen narrow conv chains (MobileNet-0.25: 8 channels) with zero '
                        "channels to a multiple of this (ONNX Runtime's NCHWc block; 0: off; "
                        'default: 16 on a CPU with AVX-512, else 0)')
    parser.add_argument('--no-static-upsample', action='store_true',
                        help='keep the neck upsampling to sizes read from feature map shapes '
                        '(by default constant scales, exact for inputs padded to a multiple of '
                        'the largest stride)')
    parser.add_argument('--verify', action='store_true',
                        help='compare ONNX Runtime and PyTorch outputs at two input sizes')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg_options = args.cfg_options
    ckpt = None if args.checkpoint.lower() == 'none' else args.checkpoint
    if ckpt is not None and not osp.isfile(ckpt):
        raise SystemExit(f'checkpoint not found: {ckpt}')
    model, cfg = build_model(args.config, ckpt, cfg_options)
    export_onnx(model, cfg, args.out, shape=args.shape, opset=args.opset,
                with_postprocess=args.with_postprocess, simplify=args.simplify == 'yes',
                pad_channels=args.pad_channels, static_upsample=not args.no_static_upsample)
    print(f'Saved {args.out} ({osp.getsize(args.out) / 1e6:.2f} MB, opset {args.opset}, '
          f'outputs: {"decoded" if args.with_postprocess else "deltas"}, dynamic H/W)')
    if args.verify:
        h, w = args.shape
        diffs = verify_onnx(model, args.out, shapes=[(h, w), (max(32, h - 128), w + 64)])
        print('max |ONNX Runtime - PyTorch| per input size: ' +
              ', '.join(f'{d:.3g}' for d in diffs))
    return 0


if __name__ == '__main__':
    sys.exit(main())
