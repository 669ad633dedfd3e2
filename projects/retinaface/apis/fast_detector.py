"""Fast single-image inference: :class:`FastFaceDetector`.

The same detections as ``mmdet.apis.inference_detector`` with the same config (same test
resize, normalisation, padding, ``test_cfg``), computed with the inference optimisations that
make it the fastest CPU path of ``tools/analysis_tools/benchmark.py``:

- Conv+BN fused (``mmcv.cnn.fuse_conv_bn``) and channels_last weights
  (:func:`optimize_for_inference`; depthwise convs run about 1.5x faster on CPU that way);
- lean pre-processing: ``cv2.imread``, the config's test ``Resize`` (mmcv, as mmdet's
  ``Resize``), then the ``DetDataPreprocessor`` math (``(x - mean) / std``, padding to
  ``pad_size_divisor`` with ``pad_value``) written by OpenCV straight into a reused channels_last
  buffer, without the copies of the generic pipeline;
- with ``jit=True``, backbone + necks + head as a frozen ``torch.jit.trace`` per input shape, run
  with oneDNN graph fusion (Conv + LeakyReLU / Add fused; about 1.5x faster at 1 thread; outputs
  within ~1e-4 of eager, the same faces);
- the head's own ``predict_by_feat`` (threshold before decoding, mmcv NMS, rescaling to the
  original image) under ``torch.inference_mode``.

Example::

    from projects.retinaface.apis import FastFaceDetector
    det = FastFaceDetector('configs/retinaface_mnet025_fpn.py', 'retinaface_mnet025.pth')
    pred = det('photo.jpg')          # or a BGR uint8 array
    pred.bboxes, pred.scores, pred.labels, pred.keypoints   # original-image pixels
"""
import copy
import os
import os.path as osp
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.structures import InstanceData

from .face_inferencer import _transform_name

# Test-pipeline transforms the lean pre-processing reproduces besides one ``Resize``.
_LOADERS = ('LoadImageFromFile', 'InferencerLoader', 'LoadImageFromNDArray')
_NO_OP = ('LoadFaceAnnotations', 'LoadAnnotations', 'PackFaceInputs', 'PackDetInputs')

ImageInput = Union[str, Path, np.ndarray]


def optimize_for_inference(model: torch.nn.Module,
                           fuse: bool = True,
                           channels_last: bool = True) -> torch.nn.Module:
    """Inference-only speed-ups of a detector, in place: eval mode, Conv+BN fused
    (``mmcv.cnn.fuse_conv_bn``; the model cannot be trained afterwards) and channels_last
    weights (the input must then be channels_last too, as :class:`FastFaceDetector` makes it).

    Returns:
        torch.nn.Module: the same model.
    """
    from mmcv.cnn import fuse_conv_bn
    model.eval()
    if fuse:
        fuse_conv_bn(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def pipeline_resize(cfg: Config) -> Optional[dict]:
    """The resize of a config's test pipeline, as :class:`FastFaceDetector` applies it.

    Returns:
        dict | None: None (original size) or ``dict(scale=(w, h), keep_ratio=bool,
        interpolation=str)``.

    Raises:
        ValueError: the pipeline has transforms the lean pre-processing does not reproduce
            (anything but image / annotation loaders, packers and one ``Resize`` with a fixed
            ``scale``), or a loader option changing the decoded image.
    """
    from mmdet.utils import get_test_pipeline_cfg
    resize = None
    for t in get_test_pipeline_cfg(cfg):
        name = _transform_name(t)
        if name in _NO_OP:
            continue
        if name in _LOADERS:
            if t.get('color_type', 'color') != 'color' or t.get('to_float32', False) or \
                    t.get('imdecode_backend', 'cv2') != 'cv2':
                raise ValueError(f'{name} options {dict(t)} are not supported by '
                                 'FastFaceDetector (needs color_type="color", cv2, uint8)')
            continue
        if name != 'Resize' or resize is not None:
            raise ValueError(f'test pipeline transform {name} is not supported by '
                             'FastFaceDetector (supported: loaders, packers and one Resize); '
                             'use mmdet.apis.inference_detector for this config')
        if t.get('scale') is None or t.get('scale_factor') is not None:
            raise ValueError('FastFaceDetector supports only a Resize with a fixed `scale`')
        if t.get('backend', 'cv2') != 'cv2':
            raise ValueError(f'Resize backend {t["backend"]!r} is not supported (only cv2)')
        scale = t['scale']
        scale = (int(scale), int(scale)) if isinstance(scale, (int, float)) else \
            tuple(int(s) for s in scale)
        resize = dict(scale=scale, keep_ratio=bool(t.get('keep_ratio', False)),
                      interpolation=t.get('interpolation', 'bilinear'))
    return resize


class FastFaceDetector:
    """Fast single-image face detection with an mmdet RetinaFace model (see the module
    docstring): the results of ``mmdet.apis.inference_detector`` with the same config
    (boxes within ~1e-3 px), at a fraction of its CPU time.

    Args:
        config (str | Path | Config): Detector config. Its test pipeline may hold image /
            annotation loaders, packers and one ``Resize`` with a fixed ``scale``
            (:func:`pipeline_resize`).
        checkpoint (str, optional): Checkpoint, loaded by ``mmdet.apis.init_detector`` (through
            the project's weights-only safe loading). None keeps the random initialisation.
        device (str): Device of the model. Defaults to ``'cpu'`` (the optimisations target
            CPU; oneDNN fusion is used only there).
        jit (bool): Run backbone + necks + head as a frozen TorchScript trace (one per input
            shape, the last 4 kept; the first 2-3 calls of a new shape trace and compile it:
            warm up). Falls back to eager, with a warning, when the model cannot be traced.
            Defaults to True.
        channels_last (bool): channels_last weights and input. Defaults to True.
        score_thr (float, optional): Overrides ``model.test_cfg.score_thr``.
        num_threads (int, optional): When given, sets ``torch.set_num_threads`` and
            ``cv2.setNumThreads`` (process-wide settings) at construction.
        cfg_options (dict, optional): Overrides merged into the config.

    The model is fused in place (``self.model``, inference only). Calls reuse an input buffer:
    use one instance per thread.
    """

    def __init__(self,
                 config: Union[str, Path, Config],
                 checkpoint: Optional[str] = None,
                 device: str = 'cpu',
                 jit: bool = True,
                 channels_last: bool = True,
                 score_thr: Optional[float] = None,
                 num_threads: Optional[int] = None,
                 cfg_options: Optional[dict] = None) -> None:
        from mmdet.apis import init_detector
        if isinstance(config, (str, Path)):
            if not osp.isfile(str(config)):
                raise FileNotFoundError(f'config file not found: {config}')
            config = Config.fromfile(str(config))
        elif isinstance(config, Config):
            config = copy.deepcopy(config)
        else:
            raise TypeError(f'config must be a file name or a Config, got {type(config)}')
        if checkpoint is not None and not osp.isfile(str(checkpoint)) and \
                '://' not in str(checkpoint):
            raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
        pipeline_resize(config)  # refuse unsupported pipelines before building
        model = init_detector(config, None if checkpoint is None else str(checkpoint),
                              device=device, cfg_options=cfg_options)
        self._setup(model, model.cfg, jit, channels_last, score_thr, num_threads)

    @classmethod
    def from_model(cls,
                   model: torch.nn.Module,
                   cfg: Optional[Config] = None,
                   jit: bool = True,
                   channels_last: bool = True,
                   score_thr: Optional[float] = None,
                   num_threads: Optional[int] = None) -> 'FastFaceDetector':
        """Wrap an already built detector (fused in place). ``cfg`` defaults to
        ``model.cfg`` (set by ``init_detector``)."""
        cfg = getattr(model, 'cfg', None) if cfg is None else cfg
        if cfg is None:
            raise ValueError('pass cfg: the model has no .cfg (build it with init_detector)')
        self = cls.__new__(cls)
        self._setup(model, cfg, jit, channels_last, score_thr, num_threads)
        return self

    # ------------------------------------------------------------------------ setup
    def _setup(self, model, cfg, jit, channels_last, score_thr, num_threads) -> None:
        head = getattr(model, 'bbox_head', None)
        if head is None or not hasattr(head, 'predict_by_feat'):
            raise TypeError(f'FastFaceDetector needs a single-stage detector with a bbox_head, '
                            f'got {type(model).__name__}')
        if num_threads is not None:
            if not isinstance(num_threads, int) or num_threads < 1:
                raise ValueError(f'num_threads must be a positive int, got {num_threads!r}')
            torch.set_num_threads(num_threads)
            cv2.setNumThreads(num_threads)
        self.test_cfg = copy.deepcopy(head.test_cfg)
        if score_thr is not None:
            if not 0 <= float(score_thr) <= 1:
                raise ValueError(f'score_thr must be in [0, 1], got {score_thr}')
            if self.test_cfg is None:
                raise ValueError('the model has no test_cfg to set score_thr in')
            self.test_cfg['score_thr'] = float(score_thr)
        self.cfg = cfg
        self.resize = pipeline_resize(cfg)
        self.model = optimize_for_inference(model, channels_last=channels_last)
        self.device = next(model.parameters()).device
        self.jit = bool(jit)
        self.channels_last = bool(channels_last)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._traced: 'OrderedDict[tuple, tuple]' = OrderedDict()
        dp = model.data_preprocessor
        normalize = bool(getattr(dp, '_enable_normalize', False))
        self.mean = dp.mean.view(1, 3, 1, 1).float().cpu() if normalize else None
        self.std = dp.std.view(1, 3, 1, 1).float().cpu() if normalize else None
        self.bgr_to_rgb = bool(getattr(dp, '_channel_conversion', False))
        self.div = int(getattr(dp, 'pad_size_divisor', 1))
        self.pad_value = float(getattr(dp, 'pad_value', 0))
        if self.mean is not None:
            self._mean_cv = tuple(float(v) for v in self.mean.reshape(3)) + (0.0, )
            std = self.std.reshape(3).numpy().astype(np.float32)
            self._std_np = None if bool((std == 1).all()) else std
        self._buffers: Dict[Tuple[int, int], np.ndarray] = {}

    # ------------------------------------------------------------------------ steps
    def preprocess(self, img: np.ndarray) -> Tuple[torch.Tensor, dict]:
        """Resize, normalise and pad a BGR uint8 ``(H, W, 3)`` image like the config's test
        pipeline + ``DetDataPreprocessor``.

        Returns:
            tuple: the ``(1, 3, Hp, Wp)`` float32 network input (channels_last when enabled;
            a view of a buffer reused by the next call of the same size) and the image meta
            (``ori_shape``, ``img_shape``, ``pad_shape``, ``batch_input_shape``,
            ``scale_factor``).
        """
        import mmcv
        ori_h, ori_w = img.shape[:2]
        if self.resize is not None:
            scale, interp = self.resize['scale'], self.resize['interpolation']
            if self.resize['keep_ratio']:
                img = mmcv.imrescale(img, scale, interpolation=interp)
            else:
                img = mmcv.imresize(img, scale, interpolation=interp)
        h, w = img.shape[:2]
        hp, wp = -(-h // self.div) * self.div, -(-w // self.div) * self.div
        if self.bgr_to_rgb:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if self.memory_format == torch.channels_last:
            # (Hp, Wp, 3) float32 numpy buffer, reused per size (only the image part is
            # written, the padding keeps pad_value): a (1, 3, Hp, Wp) channels_last view of
            # it is the network input. OpenCV's SIMD uint8 -> float32 subtraction gives the
            # same float32 values as torch's (x - mean is exact for uint8 x and the float32
            # mean, then rounded once) about 30x faster than the strided torch ops at 1 thread.
            buf = self._buffers.get((hp, wp))
            if buf is None:
                buf = np.full((hp, wp, 3), self.pad_value, dtype=np.float32)
                self._buffers = {(hp, wp): buf}
            dst = buf[:h, :w]
            if self.mean is not None:
                res = cv2.subtract(img, self._mean_cv, dst=dst, dtype=cv2.CV_32F)
                if not np.shares_memory(res, buf):
                    dst[...] = res
                if self._std_np is not None:
                    np.divide(dst, self._std_np, out=dst)
            else:
                dst[...] = img
            out = torch.from_numpy(buf).permute(2, 0, 1)[None]
        else:
            x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
            out = torch.full((1, 3, hp, wp), self.pad_value)
            if self.mean is not None:
                torch.sub(x, self.mean, out=out[:, :, :h, :w])
                out[:, :, :h, :w].div_(self.std)
            else:
                out[:, :, :h, :w] = x
        if self.device.type != 'cpu':
            out = out.to(self.device)
        meta = dict(ori_shape=(ori_h, ori_w), img_shape=(h, w), pad_shape=(hp, wp),
                    batch_input_shape=(hp, wp), scale_factor=(w / ori_w, h / ori_h))
        return out, meta

    def network(self, x: torch.Tensor) -> tuple:
        """Backbone, necks and head: the head's outputs (``cls_scores``, ``bbox_preds``,
        ``kpt_preds``, ``vert_preds``, ...). With ``jit``, through a frozen TorchScript trace
        of them built for this input shape (run with oneDNN graph fusion on CPU)."""
        if not self.jit:
            return self.model.bbox_head(self.model.extract_feat(x))
        key = (tuple(x.shape), x.device.type)
        entry = self._traced.get(key)
        if entry is None:
            try:
                entry = self._trace(x)
            except Exception as err:  # e.g. ops TorchScript cannot trace
                print_log(f'FastFaceDetector: tracing failed ({type(err).__name__}: {err}); '
                          'running eagerly', logger='current', level=30)
                self.jit = False
                return self.network(x)
            self._traced[key] = entry
            while len(self._traced) > 4:
                self._traced.popitem(last=False)
        traced, present = entry
        onednn = x.device.type == 'cpu'
        was = torch.jit.onednn_fusion_enabled()
        if onednn:
            torch.jit.enable_onednn_fusion(True)
        try:
            flat = iter(traced(x))
        finally:
            if onednn:
                torch.jit.enable_onednn_fusion(was)
        return tuple(list(next(flat)) if p else None for p in present)

    def _trace(self, x: torch.Tensor) -> tuple:
        model = self.model
        with torch.no_grad():
            present = tuple(o is not None for o in model.bbox_head(model.extract_feat(x)))

            class _Net(torch.nn.Module):

                def __init__(self):
                    super().__init__()
                    self.model = model

                def forward(self, inp):
                    outs = self.model.bbox_head(self.model.extract_feat(inp))
                    return tuple(tuple(o) for o in outs if o is not None)

            traced = torch.jit.trace(_Net().eval(), x, check_trace=False)
            return torch.jit.freeze(traced), present

    @staticmethod
    def load_image(img: ImageInput) -> np.ndarray:
        """A BGR uint8 ``(H, W, 3)`` image from a path (decoded as mmcv's
        ``LoadImageFromFile`` does) or checked as given."""
        if isinstance(img, (str, Path)):
            path = os.fspath(img)
            if not osp.isfile(path):
                raise FileNotFoundError(f'image not found: {path}')
            out = cv2.imread(path, cv2.IMREAD_COLOR)
            if out is None:
                raise ValueError(f'cannot decode image {path}')
            return out
        if isinstance(img, np.ndarray):
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError('image arrays must be BGR uint8 of shape (H, W, 3), got '
                                 f'{img.dtype} {img.shape}')
            if img.shape[0] < 1 or img.shape[1] < 1:
                raise ValueError(f'empty image of shape {img.shape}')
            return img
        raise TypeError(f'image must be a path or a numpy array, got {type(img).__name__}')

    def __call__(self, img: Union[ImageInput, Sequence[ImageInput]]
                 ) -> Union[InstanceData, List[InstanceData]]:
        """Detect faces in one image (path or BGR uint8 array) or a list of them.

        Returns:
            InstanceData | list[InstanceData]: ``bboxes`` (N, 4), ``scores`` (N,), ``labels``
            (N,), ``keypoints`` (N, 5, 2) (and ``vertices`` with the dense branch) in
            original-image pixels, on the CPU, like ``inference_detector(...).pred_instances``.
        """
        if isinstance(img, (list, tuple)):
            return [self(i) for i in img]
        image = self.load_image(img)
        with torch.inference_mode():
            x, meta = self.preprocess(image)
            outs = self.network(x)
            pred = self.model.bbox_head.predict_by_feat(
                *outs, batch_img_metas=[meta], cfg=self.test_cfg, rescale=True)[0]
        # normal (not inference-mode) tensors on the CPU, usable in place by the caller
        result = InstanceData(metainfo=dict(ori_shape=meta['ori_shape']))
        for key, value in pred.items():
            if isinstance(value, torch.Tensor):
                value = value.cpu().clone()
            setattr(result, key, value)
        return result
