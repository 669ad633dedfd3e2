#!/usr/bin/env python
"""End-to-end CPU latency of RetinaFace inference paths, with ratios to a reference baseline.

Usage::

    python tools/analysis_tools/benchmark.py CONFIG CHECKPOINT \\
        [--onnx FP32.onnx] [--onnx-int8 INT8.onnx] [--calib-dir DIR] \\
        [--sizes vga hd] [--img IMG ...] [--photo PHOTO] [--threads 1 0] \\
        [--warmup 5] [--runs 30] [--block 10] \\
        [--paths reference pytorch ort_fp32 ort_int8] [--no-jit] [--out table.md]

Every call runs the whole per-image job on one JPEG file: image decode, pre-processing,
forward, post-processing (decode, score threshold) and NMS; the detections are returned in
original-image pixels. Paths:

- ``reference``: a re-implementation (written for this project from the description of the
  procedure, not copied) of how the reference implementation's ``detect.py``
  (biubug6/Pytorch_Retinaface) runs: the same network (our modules with the same weights: the
  same math) in plain eager PyTorch under ``no_grad`` on the unpadded image minus the mean,
  ``PriorBox`` anchors rebuilt with Python loops on every call, decoding of *all* anchors, then
  the score threshold, top-k 5000, a pure-numpy greedy NMS (``py_cpu_nms`` style, +1 pixel
  areas) and the first 750 detections.
- ``pytorch``: the public API ``FastFaceDetector``
  (``projects/retinaface/apis/fast_detector.py``): our mmdet model on CPU with the inference
  optimisations of ``optimize_for_inference`` (Conv+BN fused, channels_last, anchors cached per
  input size, ``torch.inference_mode``), lean pre-processing (OpenCV normalises the decoded
  image straight into a reused channels_last buffer) and, unless ``--no-jit``, the backbone +
  necks + head run as a frozen TorchScript trace with oneDNN graph fusion (about 1.5x faster at
  1 thread; outputs within ~5e-5 of eager, the same faces); the head's ``predict_by_feat``
  (threshold before decoding, mmcv NMS) is unchanged.
- ``pytorch_mmdet``: the same optimised model through the generic mmdet flow of
  ``inference_detector`` (test pipeline, ``DetDataPreprocessor``, ``test_step``), which costs
  a few extra copies of the image.
- ``ort_fp32`` / ``ort_int8``: ONNX Runtime with ``ONNXFaceDetector``
  (``projects/retinaface/apis/onnx_inference.py``: numpy pre-processing, anchors cached per
  input size, threshold before decoding, numpy NMS). Models are exported / quantised into
  ``--work-dir`` unless ``--onnx`` / ``--onnx-int8`` are given.

Inputs: ``vga`` (640x480) and ``hd`` (1920x1080) are a real photo (``--photo``, default a photo
of ``../shared/photos``) resized to that size and saved as JPEG; ``WxH`` gives other sizes;
``--img`` adds given images as they are. ``--threads 1`` sets ``torch.set_num_threads(1)``,
``cv2.setNumThreads(1)`` and ONNX Runtime ``intra_op_num_threads=1``; ``0`` means all cores.

Timing: after ``--warmup`` calls of each path, the paths take turns in rounds, so that load
changes hit every path alike: in each round a path makes one untimed call and then ``--block``
(default 10) timed calls in a row, until it has ``--runs`` timed calls. A program runs one
detector, call after call; alternating single calls of five detectors in one process
(``--block 1``) also measures their interference: the thread pools of the path that just ran
still busy-wait on the cores, and it has evicted the caches. The table gives the median
(and the 90th percentile) per image, the throughput of one stream (1 / median) and the ratio of
each median to the reference's median of the same input and thread count. ``os.getloadavg()``
is printed before and after: other processes on the machine skew absolute numbers, the ratios
less so.
"""
import argparse
import importlib.util
import itertools
import math
import os
import os.path as osp
import platform
import sys
import tempfile
import time
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

SHARED = osp.join(REPO_ROOT, '..', 'shared')
DEFAULT_PHOTO = osp.join(SHARED, 'photos', 'group_img3.jpg')
DEFAULT_CALIB = osp.join(SHARED, 'data', 'widerface', 'WIDER_train', 'images')
from projects.retinaface.apis.fast_detector import (  # noqa: E402
    FastFaceDetector,
    optimize_for_inference,
)

NAMED_SIZES = {'vga': (640, 480), 'hd': (1920, 1080)}
ALL_PATHS = ('reference', 'pytorch', 'pytorch_mmdet', 'ort_fp32', 'ort_int8')


def _load_tool(rel_path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO_ROOT, rel_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------- reference baseline
class ReferenceBaseline:
    """Re-implementation of the reference ``detect.py`` procedure (see the module docstring).

    Args:
        model: our detector with the weights to use (its backbone, neck and head convs form the
            network; nothing is fused).
        conf_thr, top_k, nms_thr, keep_top_k: the reference's detection settings.
    """

    def __init__(self, model, conf_thr: float = 0.02, top_k: int = 5000, nms_thr: float = 0.4,
                 keep_top_k: int = 750) -> None:
        head = model.bbox_head
        gen = head.prior_generator
        if len(gen.ratios) != 1 or float(gen.ratios[0]) != 1.0:
            raise ValueError('the reference baseline needs square anchors (ratios [1.0])')
        self.model = model
        self.steps = [int(s[0]) for s in gen.strides]
        self.min_sizes = [[float(b) * float(s) for s in gen.scales] for b in gen.base_sizes]
        self.variances = (float(head.bbox_coder.stds[0]), float(head.bbox_coder.stds[2]))
        self.kpt_variance = float(head.landmark_coder.variance)
        self.mean = np.asarray([104, 117, 123], dtype=np.float32)
        self.conf_thr, self.top_k, self.nms_thr, self.keep_top_k = (conf_thr, top_k, nms_thr,
                                                                    keep_top_k)

    def network(self, x: torch.Tensor):
        """loc (1, N, 4), conf (1, N, 2) softmaxed, landms (1, N, 10), like the reference."""
        head = self.model.bbox_head
        cls, box, kpt, _ = head(self.model.extract_feat(x))
        conf = head._flatten(cls, head.cls_out_channels).softmax(-1)
        return head._flatten(box, 4), conf, head._flatten(kpt, 2 * head.num_keypoints)

    def prior_box(self, image_hw: Tuple[int, int]) -> torch.Tensor:
        """Centre-size anchors normalised by the image size, built with Python loops.

        The work per anchor is that of the reference's ``PriorBox.forward``, since its cost is
        what is being reproduced: ``itertools.product`` over each feature-map grid; per anchor
        size the two normalised size terms, the centre x and y each as a one-element list made
        by a comprehension, a product over those two lists, and a list concatenation of the
        four values; at the end ``torch.Tensor`` of the flat list. (A leaner loop with four
        ``append`` calls per anchor, used here until 2026-12-04, gave the same values 2.3-2.4x
        faster: 8 instead of 19 ms at 640x480, 54 instead of 131 ms at 1920x1080.)
        """
        img_h, img_w = image_hw
        flat = []
        for step, sizes in zip(self.steps, self.min_sizes):
            grid = itertools.product(range(math.ceil(img_h / step)),
                                     range(math.ceil(img_w / step)))
            for row, col in grid:
                for size in sizes:
                    w_term, h_term = size / img_w, size / img_h
                    xs = [v * step / img_w for v in [col + 0.5]]
                    ys = [v * step / img_h for v in [row + 0.5]]
                    for y, x in itertools.product(ys, xs):
                        flat += [x, y, w_term, h_term]
        return torch.Tensor(flat).view(-1, 4)

    def decode(self, loc: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        v0, v1 = self.variances
        ctr = priors[:, :2] + loc[:, :2] * v0 * priors[:, 2:]
        wh = priors[:, 2:] * torch.exp(loc[:, 2:] * v1)
        return torch.cat([ctr - wh / 2, ctr + wh / 2], dim=1)

    def decode_landmarks(self, pre: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        """All anchors' landmarks, one slice per point then concatenated (the reference's
        ``decode_landm``)."""
        ctr, size = priors[:, :2], priors[:, 2:]
        return torch.cat([ctr + pre[:, 2 * k:2 * k + 2] * self.kpt_variance * size
                          for k in range(pre.size(1) // 2)], dim=1)

    @staticmethod
    def greedy_nms(dets: np.ndarray, thresh: float) -> List[int]:
        """Pure-numpy greedy NMS (+1 pixel areas, suppress IoU > thresh)."""
        x1, y1, x2, y2, scores = (dets[:, i] for i in range(5))
        areas = (x2 - x1 + 1) * (y2 - y1 + 1)
        order = scores.argsort()[::-1]
        keep = []
        while order.size > 0:
            i = order[0]
            keep.append(int(i))
            xx1 = np.maximum(x1[i], x1[order[1:]])
            yy1 = np.maximum(y1[i], y1[order[1:]])
            xx2 = np.minimum(x2[i], x2[order[1:]])
            yy2 = np.minimum(y2[i], y2[order[1:]])
            w = np.maximum(0.0, xx2 - xx1 + 1)
            h = np.maximum(0.0, yy2 - yy1 + 1)
            inter = w * h
            ovr = inter / (areas[i] + areas[order[1:]] - inter)
            order = order[np.where(ovr <= thresh)[0] + 1]
        return keep

    def __call__(self, path: str) -> Dict[str, np.ndarray]:
        img = np.float32(cv2.imread(path, cv2.IMREAD_COLOR))
        im_h, im_w = img.shape[:2]
        img -= self.mean
        x = torch.from_numpy(img.transpose(2, 0, 1)).unsqueeze(0)
        with torch.no_grad():
            loc, conf, landms = self.network(x)
            priors = self.prior_box((im_h, im_w))
            resize = 1  # detect.py's --origin_size; it still divides by it
            scale = torch.tensor([im_w, im_h] * 2, dtype=torch.float32)
            boxes = (self.decode(loc[0], priors) * scale / resize).numpy()
            scores = conf[0][:, 0].numpy()  # our class order is [face, background]
            kscale = torch.tensor([im_w, im_h] * 5, dtype=torch.float32)
            kpts = (self.decode_landmarks(landms[0], priors) * kscale / resize).numpy()
        inds = np.where(scores > self.conf_thr)[0]
        boxes, kpts, scores = boxes[inds], kpts[inds], scores[inds]
        order = scores.argsort()[::-1][:self.top_k]
        boxes, kpts, scores = boxes[order], kpts[order], scores[order]
        dets = np.hstack((boxes, scores[:, None])).astype(np.float32, copy=False)
        keep = self.greedy_nms(dets, self.nms_thr)[:self.keep_top_k]
        return dict(bboxes=dets[keep, :4], scores=dets[keep, 4],
                    keypoints=kpts[keep].reshape(-1, 5, 2))


# ---------------------------------------------------------------------------- our PyTorch paths
# The ``pytorch`` path is the public API ``FastFaceDetector`` (projects/retinaface/apis).


class MMDetPipelinePath:
    """Our model through the generic mmdet flow of ``inference_detector``: test pipeline
    (``LoadImageFromFile``, ``PackFaceInputs``), ``DetDataPreprocessor`` and ``test_step``,
    under ``torch.inference_mode`` (with channels_last, the batch is converted after the data
    preprocessor)."""

    def __init__(self, model, cfg, channels_last: bool = True) -> None:
        from projects.retinaface.apis import build_test_pipeline
        self.model = model
        self.pipeline = build_test_pipeline(cfg)
        self.channels_last = channels_last

    def __call__(self, path: str) -> Dict[str, np.ndarray]:
        data = self.pipeline(dict(img_path=path, img_id=0))
        batch = dict(inputs=[data['inputs']], data_samples=[data['data_samples']])
        with torch.inference_mode():
            if self.channels_last:
                batch = self.model.data_preprocessor(batch, False)
                batch['inputs'] = batch['inputs'].contiguous(memory_format=torch.channels_last)
                pred = self.model(**batch, mode='predict')[0].pred_instances
            else:
                pred = self.model.test_step(batch)[0].pred_instances
        out = dict(bboxes=pred.bboxes.numpy(), scores=pred.scores.numpy())
        if 'keypoints' in pred:
            out['keypoints'] = pred.keypoints.numpy()
        return out


# ---------------------------------------------------------------------------- timing
def make_inputs(sizes: Sequence[str], imgs: Sequence[str], photo: Optional[str],
                work_dir: str) -> List[Tuple[str, str]]:
    """(label, jpeg path) of every benchmark input."""
    out = []
    src = None
    for size in sizes:
        if size.lower() in NAMED_SIZES:
            w, h = NAMED_SIZES[size.lower()]
            label = f'{size.upper()} {w}x{h}'
        else:
            try:
                w, h = (int(v) for v in size.lower().split('x'))
            except ValueError:
                raise ValueError(f'size must be vga, hd or WxH, got {size!r}') from None
            label = f'{w}x{h}'
        if src is None:
            if photo is None or not osp.isfile(photo):
                raise FileNotFoundError(f'photo to resize not found: {photo} (pass --photo)')
            src = cv2.imread(photo, cv2.IMREAD_COLOR)
            if src is None:
                raise FileNotFoundError(f'cannot read {photo}')
        path = osp.join(work_dir, f'input_{w}x{h}.jpg')
        cv2.imwrite(path, cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        out.append((label, path))
    for img in imgs:
        im = cv2.imread(img, cv2.IMREAD_COLOR)
        if im is None:
            raise FileNotFoundError(f'cannot read --img {img}')
        out.append((f'{osp.basename(img)} {im.shape[1]}x{im.shape[0]}', img))
    return out


def time_paths(paths: Dict[str, Callable], img: str, warmup: int, runs: int,
               block: int = 1) -> dict:
    """Timing in rounds; returns ``{name: dict(times=[...], result=last output)}``.

    After ``warmup`` calls of each path, every round gives each path in turn ``block``
    consecutive timed calls, until each has ``runs``. With ``block=1`` single calls of the
    paths alternate (strict round robin); with ``block > 1`` each block starts with one
    untimed call, so the timed calls follow a call of the same path, as in a program that
    runs one detector: the previous path's busy-waiting thread pools and cache contents
    do not land on the first timed call.
    """
    if block < 1:
        raise ValueError(f'block must be >= 1, got {block}')
    out = {name: dict(times=[], result=None) for name in paths}
    for name, fn in paths.items():
        for _ in range(warmup):
            out[name]['result'] = fn(img)
    while paths and len(out[next(iter(paths))]['times']) < runs:
        for name, fn in paths.items():
            times = out[name]['times']
            if block > 1:
                out[name]['result'] = fn(img)  # settle: untimed
            for _ in range(min(block, runs - len(times))):
                t0 = time.perf_counter()
                out[name]['result'] = fn(img)
                times.append(time.perf_counter() - t0)
    return out


def set_threads(n: int) -> int:
    n = n if n > 0 else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    cv2.setNumThreads(n)  # OpenCV's own pool (image ops of the pre-processing)
    return n


def format_table(rows: List[dict]) -> str:
    lines = ['| input | threads | path | median ms | p90 ms | img/s | x reference | faces>=0.5 |',
             '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for r in rows:
        lines.append(f'| {r["input"]} | {r["threads"]} | {r["path"]} | {r["median_ms"]:.1f} | '
                     f'{r["p90_ms"]:.1f} | {r["fps"]:.1f} | {r["ratio"]:.2f} | {r["faces"]} |')
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='End-to-end latency of RetinaFace paths')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint ("none": random weights)')
    parser.add_argument('--onnx', help='FP32 .onnx (default: exported into --work-dir)')
    parser.add_argument('--onnx-int8', help='INT8 .onnx (default: quantised into --work-dir)')
    parser.add_argument('--calib-dir', default=DEFAULT_CALIB,
                        help='calibration images when quantising (default: shared WIDER train)')
    parser.add_argument('--num-calib', type=int, default=64)
    parser.add_argument('--sizes', nargs='*', default=['vga', 'hd'],
                        help='vga, hd or WxH inputs made by resizing --photo')
    parser.add_argument('--img', nargs='*', default=[], help='images used as they are')
    parser.add_argument('--photo', default=DEFAULT_PHOTO, help='photo resized for --sizes')
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 0],
                        help='thread counts (0: all cores)')
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--runs', type=int, default=30)
    parser.add_argument('--block', type=int, default=10,
                        help='timed calls of one path in a row (after one untimed call) '
                        'before the next path; 1: strict round robin of single calls')
    parser.add_argument('--paths', nargs='+', default=list(ALL_PATHS), choices=ALL_PATHS)
    parser.add_argument('--no-channels-last', action='store_true',
                        help='keep the contiguous (NCHW) memory format in the pytorch path')
    parser.add_argument('--no-jit', action='store_true',
                        help='run the pytorch path eagerly instead of as a frozen TorchScript '
                        'trace with oneDNN graph fusion')
    parser.add_argument('--work-dir', help='folder for inputs and models (default: temporary)')
    parser.add_argument('--out', help='also write the markdown table to this file')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.block < 1:
        raise SystemExit('--runs and --block must be >= 1 and --warmup >= 0')
    if not args.sizes and not args.img:
        raise SystemExit('nothing to run: give --sizes and/or --img')
    p2o = _load_tool('tools/deployment/pytorch2onnx.py', 'retinaface_pytorch2onnx')
    from projects.retinaface.apis.onnx_inference import ONNXFaceDetector
    tmp = None
    work_dir = args.work_dir
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory()
        work_dir = tmp.name
    os.makedirs(work_dir, exist_ok=True)
    ckpt = None if args.checkpoint.lower() == 'none' else args.checkpoint
    load_before = os.getloadavg()

    onnx_fp32, onnx_int8 = args.onnx, args.onnx_int8
    if {'ort_fp32', 'ort_int8'} & set(args.paths) and onnx_fp32 is None:
        model, cfg = p2o.build_model(args.config, ckpt)
        onnx_fp32 = p2o.export_onnx(model, cfg, osp.join(work_dir, 'model_fp32.onnx'))
    if 'ort_int8' in args.paths and onnx_int8 is None:
        oq = _load_tool('tools/deployment/onnx_quantize.py', 'retinaface_onnx_quantize')
        images = oq.list_images(args.calib_dir)
        calib, _ = oq.split_images(images, min(args.num_calib, len(images)))
        onnx_int8 = osp.join(work_dir, 'model_int8.onnx')
        oq.quantize(onnx_fp32, onnx_int8, calib, calib_root=args.calib_dir)

    inputs = make_inputs(args.sizes, args.img, args.photo, work_dir)
    rows = []
    for threads in args.threads:
        n = set_threads(threads)
        paths = OrderedDict()
        if 'reference' in args.paths:
            ref_model, _ = p2o.build_model(args.config, ckpt)
            paths['reference'] = ReferenceBaseline(ref_model)
        cl = not args.no_channels_last
        if 'pytorch' in args.paths:
            paths['pytorch'] = FastFaceDetector(args.config, ckpt, device='cpu',
                                                jit=not args.no_jit, channels_last=cl)
        if 'pytorch_mmdet' in args.paths:
            model, cfg = p2o.build_model(args.config, ckpt)
            paths['pytorch_mmdet'] = MMDetPipelinePath(
                optimize_for_inference(model, channels_last=cl), cfg, cl)
        ort_threads = threads if threads > 0 else None
        if 'ort_fp32' in args.paths:
            paths['ort_fp32'] = ONNXFaceDetector(onnx_fp32, num_threads=ort_threads)
        if 'ort_int8' in args.paths:
            paths['ort_int8'] = ONNXFaceDetector(onnx_int8, num_threads=ort_threads)
        for label, img in inputs:
            res = time_paths(paths, img, args.warmup, args.runs, args.block)
            ref_med = np.median(res['reference']['times']) if 'reference' in res else None
            for name, r in res.items():
                med = float(np.median(r['times']))
                rows.append(dict(
                    input=label, threads=f'{threads} ({n})' if threads <= 0 else str(n),
                    path=name, median_ms=1000 * med,
                    p90_ms=1000 * float(np.percentile(r['times'], 90)), fps=1 / med,
                    ratio=med / ref_med if ref_med else float('nan'),
                    faces=int((np.asarray(r['result']['scores']) >= 0.5).sum())))
    load_after = os.getloadavg()
    # the vector ISA decides ONNX Runtime's kernels (and the export / quantisation defaults)
    from projects.retinaface.apis.onnx_inference import cpu_flags, cpu_model_name
    flags = cpu_flags()
    isa = '/'.join(f for f in ('avx2', 'avx512f', 'avx512_vnni', 'avx_vnni') if f in flags)
    isa = f' ({isa})' if isa else ''
    cpu = cpu_model_name() or platform.processor() or 'CPU'
    header = (f'RetinaFace end-to-end CPU latency ({args.config}); {cpu}, '
              f'{os.cpu_count()} cores{isa}, torch {torch.__version__}, onnxruntime '
              f'{__import__("onnxruntime").__version__}; median of {args.runs} runs after '
              f'{args.warmup} warm-up calls, '
              + (f'paths alternating in blocks of {min(args.block, args.runs)} timed calls '
                 '(each after one untimed call)' if min(args.block, args.runs) > 1
                 else 'single calls of the paths interleaved')
              + '; threads 0 = all cores.\n'
              f'Load average (1/5/15 min) before: {load_before[0]:.2f} / {load_before[1]:.2f} / '
              f'{load_before[2]:.2f}, after: {load_after[0]:.2f} / {load_after[1]:.2f} / '
              f'{load_after[2]:.2f}.\n'
              "'reference' re-implements the reference detect.py procedure (see "
              'tools/analysis_tools/benchmark.py); '
              + ("'pytorch' runs eagerly (--no-jit)." if args.no_jit else
                 "'pytorch' runs backbone, necks and head as a frozen TorchScript trace with "
                 'oneDNN graph fusion (outputs within ~1e-4 of eager).')
              + ' All paths keep the config test_cfg (nms_pre per level, no overall cap).')
    text = header + '\n\n' + format_table(rows)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
