#!/usr/bin/env python
"""Static INT8 quantisation of an exported RetinaFace ``.onnx`` with ONNX Runtime.

Usage::

    python tools/deployment/onnx_quantize.py IN.onnx OUT.onnx \\
        --calib-dir ../shared/data/widerface/WIDER_train/images [--num-calib 64] \\
        [--format QDQ] [--method Percentile] [--no-per-channel] [--exclude NAME_PART ...]

Calibration images are read with ``cv2.imread`` and pre-processed exactly like inference
(``onnx_inference.preprocess`` with the model's own metadata: test-pipeline resize, mean / std,
padding to a multiple of 32), one image per batch at its own size (the graph has dynamic H / W).
``--num-calib`` images are drawn from all images under ``--calib-dir`` with a seeded shuffle
(:func:`split_images`); their paths are stored in the output's metadata
(``retinaface.calibration_images``) so that evaluations can leave them out (see
``tools/deployment/eval_onnx.py``).

Weights are quantised per output channel (symmetric INT8), activations per tensor (UINT8 by
default: ONNX Runtime's fast U8S8 kernels on x86; INT8 activations ran 5x slower in QOperator
form here) from Percentile calibration ranges (99.999th percentile; on 500 held-out WIDER train
images, with the first 7 convs in float, it lost 0.27 all-faces AP where MinMax lost 0.79,
Entropy 0.33 and MinMax on 256 calibration images 0.41); ``--format QDQ`` (default) writes
QuantizeLinear / DequantizeLinear pairs that ONNX Runtime fuses into integer kernels. Kept in
float: the operations after the prediction convs (flattening, sigmoid: they only touch the
outputs) and, by default, the first 8 convs (``--float-first-convs``): with MobileNet-0.25 these
are the 8-32-channel layers at 1/2 and 1/4 resolution and the stride-2 depthwise conv that
leaves 1/4 resolution. They cost most of the INT8 accuracy loss (all layers INT8 lost 5.7 AP)
and ONNX Runtime's INT8 kernels are slower than its float ones on these narrow layers (1 or 2 in
float: +6 and +4.4 ms at 1920x1080). Ending the float part after that stride-2 conv hands a 4x
smaller tensor to the INT8 part than ending it before: with 8 in float instead of 7 the network
ran 1.6 ms faster at 1920x1080 (0.4 ms at 1024x768) and lost 0.10 all-faces AP instead of 0.27;
9, 11 or 13 in float were no faster. Weights are 7-bit by default on x86 CPUs without VNNI
(``--reduce-range``, see :func:`default_reduce_range`). The model is first optimised with
``onnxruntime.quantization.quant_pre_process`` (shape inference, Conv+BN / Conv+ReLU fusion).
The RetinaFace metadata of the input model is copied to the output, so
``ONNXFaceDetector('OUT.onnx')`` works unchanged.
"""
import argparse
import json
import os
import os.path as osp
import random
import sys
import tempfile
from typing import List, Optional, Sequence, Tuple

import cv2

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# Loaded by path: this tool needs neither torch nor mmdet.
_spec_path = osp.join(REPO_ROOT, 'projects', 'retinaface', 'apis', 'onnx_inference.py')
if 'projects.retinaface.apis.onnx_inference' in sys.modules:
    onnx_inference = sys.modules['projects.retinaface.apis.onnx_inference']
else:
    import importlib.util
    _spec = importlib.util.spec_from_file_location('retinaface_onnx_inference', _spec_path)
    onnx_inference = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(onnx_inference)

IMG_EXTS = ('.jpg', '.jpeg', '.png', '.bmp')


def list_images(root: str) -> List[str]:
    """All images under ``root`` (recursive), sorted."""
    if not osp.isdir(root):
        raise FileNotFoundError(f'calibration image folder not found: {root}')
    out = []
    for dirpath, _, files in os.walk(root):
        out += [osp.join(dirpath, f) for f in files if f.lower().endswith(IMG_EXTS)]
    if not out:
        raise FileNotFoundError(f'no images ({", ".join(IMG_EXTS)}) under {root}')
    return sorted(out)


def split_images(images: Sequence[str], num_calib: int, num_eval: int = 0,
                 seed: int = 0) -> tuple:
    """Disjoint calibration / evaluation subsets from one seeded shuffle: the first
    ``num_calib`` images are for calibration, the last ``num_eval`` for evaluation."""
    if num_calib <= 0:
        raise ValueError(f'num_calib must be positive, got {num_calib}')
    if num_calib + num_eval > len(images):
        raise ValueError(f'{num_calib} calibration + {num_eval} evaluation images requested, '
                         f'only {len(images)} available')
    order = list(images)
    random.Random(seed).shuffle(order)
    return order[:num_calib], (order[len(order) - num_eval:] if num_eval else [])


def readable_images(paths: Sequence[str]) -> Tuple[List[str], List[str]]:
    """``(readable, unreadable)``: the paths OpenCV decodes, and those it cannot (corrupt or
    truncated files), each list in the given order."""
    ok, bad = [], []
    for path in paths:
        (ok if cv2.imread(path, cv2.IMREAD_COLOR) is not None else bad).append(path)
    return ok, bad


class ImageCalibrationReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over image files, pre-processed like
    inference (one image per batch)."""

    def __init__(self, images: Sequence[str], meta: dict, input_name: str = 'input') -> None:
        self.images = list(images)
        self.pre = meta['preprocess']
        self.input_name = input_name
        self._it = iter(self.images)
        self._done = 0

    def get_next(self) -> Optional[dict]:
        path = next(self._it, None)
        if path is None:
            return None
        self._done += 1  # progress: calibration takes about a second per image on one core
        print(f'calibration image {self._done}/{len(self.images)}: {path}', file=sys.stderr,
              flush=True)
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f'cannot read calibration image {path}')
        blob, _ = onnx_inference.preprocess(img, self.pre)
        return {self.input_name: blob}

    def rewind(self) -> None:
        self._it = iter(self.images)
        self._done = 0

    def set_range(self, start_index: int, end_index: int) -> None:
        """Restrict to ``images[start_index:end_index]`` (chunked calibration)."""
        self._it = iter(self.images[start_index:end_index])

    def __len__(self) -> int:
        return len(self.images)


def head_nodes(model) -> tuple:
    """Names of the prediction convs (Conv nodes whose output is only reshaped / transposed)
    and of every node downstream of them (the flattening, concat, softmax / sigmoid and, with
    ``--with-postprocess``, decoding), which work on the outputs and stay in float."""
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    preds = [n for n in model.graph.node if n.op_type == 'Conv' and all(
        c.op_type in ('Transpose', 'Reshape') for o in n.output for c in consumers.get(o, []))]
    tail, stack = set(), [c for n in preds for o in n.output for c in consumers.get(o, [])]
    while stack:
        node = stack.pop()
        if node.name in tail:
            continue
        tail.add(node.name)
        stack += [c for o in node.output for c in consumers.get(o, [])]
    return [n.name for n in preds], sorted(tail)


def first_conv_nodes(model, num_convs: int) -> List[str]:
    """Names of the nodes from the graph input up to the ``num_convs``-th Conv and the
    element-wise ops right after it (its activation), in graph (topological) order."""
    if num_convs <= 0:
        return []
    names, seen = [], 0
    for node in model.graph.node:
        if node.op_type == 'Conv':
            if seen == num_convs:
                break
            seen += 1
        if node.op_type != 'Constant':
            names.append(node.name)
    return names


#: x86 flags of integer dot-product instructions that add u8 x s8 products without 16-bit
#: saturation (ONNX Runtime's U8S8 kernels use them when present).
VNNI_FLAGS = ('avx512_vnni', 'avx_vnni', 'amx_int8')


def default_reduce_range(cpuinfo: str = '/proc/cpuinfo') -> bool:
    """The ``reduce_range`` default: 7-bit weights on an x86 CPU without VNNI, where ONNX
    Runtime's U8S8 convolutions add pairs of products in saturating 16-bit integers (on this
    project's AVX2 machine 8-bit weights lost 0.21 all-faces AP on 500 WIDER train images, 7-bit
    ones 0.06, at the same speed); 8-bit weights elsewhere (they lost 0.10 on the AVX-512 machine
    of an earlier session). The quantised model is tuned for the CPU it is quantised on; give
    ``--reduce-range`` / ``--no-reduce-range`` for another."""
    flags = onnx_inference.cpu_flags(cpuinfo)
    return bool(flags) and not any(f in flags for f in VNNI_FLAGS)


def quantize(in_onnx: str,
             out_onnx: str,
             calib_images: Sequence[str],
             quant_format: str = 'QDQ',
             method: str = 'Percentile',
             per_channel: bool = True,
             exclude: Sequence[str] = (),
             float_head: bool = False,
             float_first_convs: int = 8,
             activation_type: str = 'uint8',
             reduce_range: Optional[bool] = None,
             calib_root: Optional[str] = None) -> dict:
    """Quantise ``in_onnx`` to INT8 and write ``out_onnx`` (metadata copied).

    Args:
        calib_images: image files for calibration.
        quant_format: ``'QDQ'`` or ``'QOperator'``.
        method: ``'MinMax'``, ``'Entropy'`` or ``'Percentile'``.
        per_channel: per-output-channel weight scales.
        exclude: nodes whose name contains one of these strings stay in float.
        float_head: keep the prediction convs of the head in float too (the operations after
            them always stay in float, see :func:`head_nodes`).
        float_first_convs: keep the first convs (and their activations) in float: the
            full-resolution layers with few channels lose the most accuracy in INT8 and gain
            little speed from it.
        activation_type: ``'int8'`` or ``'uint8'`` activations (weights are always int8).
        reduce_range: 7-bit weights (avoids 16-bit saturation on x86 CPUs without VNNI);
            None: :func:`default_reduce_range` (on when this CPU lacks VNNI).
        calib_root: stored calibration paths are made relative to it.

    Returns:
        dict: the ``quantization`` entry written to the metadata.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )
    if not calib_images:
        raise ValueError('no calibration images')
    calib_images, unreadable = readable_images(calib_images)
    for path in unreadable:
        print(f'skipped calibration image {path}: cannot be decoded', file=sys.stderr)
    if unreadable:
        print(f'{len(unreadable)} of {len(calib_images) + len(unreadable)} calibration images '
              'could not be read and were skipped', file=sys.stderr)
    if not calib_images:
        raise ValueError('none of the calibration images can be read')
    if reduce_range is None:
        reduce_range = default_reduce_range()
    meta = onnx_inference.read_metadata(in_onnx)
    formats = dict(QDQ=QuantFormat.QDQ, QOperator=QuantFormat.QOperator)
    methods = dict(MinMax=CalibrationMethod.MinMax, Entropy=CalibrationMethod.Entropy,
                   Percentile=CalibrationMethod.Percentile)
    if quant_format not in formats:
        raise ValueError(f'format must be one of {sorted(formats)}, got {quant_format!r}')
    acts = dict(int8=QuantType.QInt8, uint8=QuantType.QUInt8)
    if activation_type not in acts:
        raise ValueError(f'activation_type must be int8 or uint8, got {activation_type!r}')
    if method not in methods:
        raise ValueError(f'method must be one of {sorted(methods)}, got {method!r}')

    class _Reader(ImageCalibrationReader, CalibrationDataReader):
        pass

    # the calibrator runs in a temporary working directory (below): relative paths given by
    # the user (``--calib-dir ../images``) must be resolved first
    calib_images = [osp.abspath(p) for p in calib_images]
    calib_root = osp.abspath(calib_root) if calib_root else calib_root

    with tempfile.TemporaryDirectory() as tmp:
        prep = osp.join(tmp, 'prep.onnx')
        quant_pre_process(in_onnx, prep, skip_symbolic_shape=True)
        model = onnx.load(prep)
        pred_convs, tail = head_nodes(model)
        nodes_to_exclude = set(tail) | set(pred_convs if float_head else [])
        nodes_to_exclude |= set(first_conv_nodes(model, float_first_convs))
        nodes_to_exclude |= {n.name for n in model.graph.node if any(e in n.name for e in exclude)}
        nodes_to_exclude = sorted(nodes_to_exclude)
        input_name = model.graph.input[0].name
        # MinMax keeps only each tensor's min / max per image; the histogram methods keep whole
        # tensors, so they calibrate image by image (CalibStridedMinMax, which works
        # for every method; CalibMaxIntermediateOutputs drops data in onnxruntime 1.32).
        def run(calib_method: str) -> None:
            extra = dict(ActivationSymmetric=False, WeightSymmetric=True)
            if calib_method != 'MinMax':
                extra['CalibStridedMinMax'] = 1  # one image per chunk: sizes differ
            cwd = os.getcwd()
            os.chdir(tmp)  # the calibrator writes its augmented model to the current directory
            try:
                quantize_static(
                    prep,
                    out_onnx if osp.isabs(out_onnx) else osp.join(cwd, out_onnx),
                    _Reader(calib_images, meta, input_name),
                    quant_format=formats[quant_format],
                    per_channel=per_channel,
                    activation_type=acts[activation_type],
                    reduce_range=reduce_range,
                    weight_type=QuantType.QInt8,
                    calibrate_method=methods[calib_method],
                    nodes_to_exclude=nodes_to_exclude,
                    extra_options=extra)
            finally:
                os.chdir(cwd)

        used = method
        try:
            run(method)
        except ValueError as e:
            # onnxruntime's histogram calibration fails on a tensor that is constant over all
            # calibration images ("Too many bins for data range"): MinMax handles it
            if method == 'MinMax' or 'bins' not in str(e):
                raise
            print(f'{method} calibration failed ({e}); calibrating with MinMax instead',
                  file=sys.stderr)
            used = 'MinMax'
            run(used)
    rel = [osp.relpath(p, calib_root) if calib_root else p for p in calib_images]
    qinfo = dict(
        format=quant_format, method=used, per_channel=per_channel, weight_type='int8',
        activation_type=activation_type, reduce_range=reduce_range, float_head=float_head,
        float_first_convs=float_first_convs,
        num_float_nodes=len(nodes_to_exclude), num_calib=len(calib_images),
        num_unreadable=len(unreadable))
    meta['quantization'] = qinfo
    onnx_inference.write_metadata(
        out_onnx, meta, extra={'retinaface.calibration_images': json.dumps(rel)})
    return qinfo


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Static INT8 quantisation of a RetinaFace ONNX')
    parser.add_argument('input', help='FP32 .onnx from tools/deployment/pytorch2onnx.py')
    parser.add_argument('output', help='output INT8 .onnx')
    parser.add_argument('--calib-dir', required=True,
                        help='folder of calibration images (searched recursively)')
    parser.add_argument('--num-calib', type=int, default=64, help='number of calibration images')
    parser.add_argument('--seed', type=int, default=0, help='seed of the image shuffle')
    parser.add_argument('--format', choices=['QDQ', 'QOperator'], default='QDQ')
    parser.add_argument('--method', choices=['MinMax', 'Entropy', 'Percentile'],
                        default='Percentile',
                        help='calibration method (Percentile: activation ranges clipped at '
                        'the 99.999th percentile of the calibration values)')
    parser.add_argument('--no-per-channel', action='store_true',
                        help='one weight scale per tensor instead of per output channel')
    parser.add_argument('--activation-type', choices=['int8', 'uint8'], default='uint8',
                        help='uint8 (default) uses the fast U8S8 kernels of x86 CPUs')
    parser.add_argument('--reduce-range', action=argparse.BooleanOptionalAction, default=None,
                        help='7-bit weights (default: on for an x86 CPU without VNNI, where '
                        "ONNX Runtime's U8S8 kernels saturate 16-bit sums)")
    parser.add_argument('--float-first-convs', type=int, default=8,
                        help='keep the first N convs (and their activations) in float '
                        '(default 8: the stride-2/4 layers of MobileNet-0.25, see the docstring)')
    parser.add_argument('--float-head', action='store_true',
                        help='keep the prediction convs of the head in float')
    parser.add_argument('--exclude', nargs='*', default=[],
                        help='keep nodes whose name contains one of these strings in float')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not osp.isfile(args.input):
        raise SystemExit(f'input model not found: {args.input}')
    images = list_images(args.calib_dir)
    calib, _ = split_images(images, min(args.num_calib, len(images)), seed=args.seed)
    qinfo = quantize(args.input, args.output, calib, quant_format=args.format,
                     method=args.method, per_channel=not args.no_per_channel,
                     exclude=args.exclude, float_head=args.float_head,
                     float_first_convs=args.float_first_convs,
                     activation_type=args.activation_type, reduce_range=args.reduce_range,
                     calib_root=args.calib_dir)
    print(f'Saved {args.output} ({osp.getsize(args.output) / 1e6:.2f} MB): {qinfo["format"]} '
          f'INT8, {qinfo["method"]} calibration on {qinfo["num_calib"]} images, per-channel '
          f'weights: {qinfo["per_channel"]}, float nodes: {qinfo["num_float_nodes"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
