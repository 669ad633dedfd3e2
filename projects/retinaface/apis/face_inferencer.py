"""Inference with landmarks: ``FaceInferencer``, a landmark-aware ``DetInferencer.pred2dict``
and a test-pipeline builder for ``mmdet.apis.inference_detector``.

``mmdet.apis.init_detector`` / ``inference_detector`` need nothing extra: the returned
``DetDataSample.pred_instances`` carries ``keypoints`` (N, 5, 2) (and ``vertices`` (N, V, 3) with
the dense branch) in original-image pixels. ``DetInferencer.pred2dict`` however only exports
boxes, scores and labels; :func:`install_det_inferencer_landmarks` (run on
``import projects.retinaface``) wraps it so that its dicts and JSON files also hold
``keypoints`` / ``vertices`` when the predictions have them, and are unchanged otherwise.
"""
import copy
import functools
import logging
import os.path as osp
import warnings
from typing import Dict, List, Optional

import mmengine
from mmcv.transforms import Compose
from mmdet.apis import DetInferencer
from mmdet.registry import DATASETS, VISUALIZERS
from mmdet.structures import DetDataSample
from mmdet.utils import ConfigType, get_test_pipeline_cfg
from mmengine.logging import print_log
from mmengine.visualization import Visualizer

from ..utils import image_load_failure
from ..visualization import FaceLocalVisualizer

# Transforms that load annotations; inference has none, so they are dropped from test pipelines.
ANNOTATION_LOADERS = ('LoadFaceAnnotations', 'LoadAnnotations')
# Per-instance prediction fields exported besides mmdet's labels / scores / bboxes.
LANDMARK_FIELDS = ('keypoints', 'vertices')

_WRAPPED_FLAG = '_retinaface_landmarks'


def _transform_name(transform) -> str:
    t = transform['type'] if isinstance(transform, dict) else transform
    if isinstance(t, str):
        return t.split('.')[-1]
    return getattr(t, '__name__', type(t).__name__)


def drop_annotation_loaders(pipeline_cfg: List[dict]) -> List[dict]:
    """Return the pipeline config without annotation-loading transforms
    (:data:`ANNOTATION_LOADERS`, with or without a scope prefix)."""
    return [t for t in pipeline_cfg if _transform_name(t) not in ANNOTATION_LOADERS]


def build_test_pipeline(cfg: ConfigType) -> Compose:
    """Test pipeline of a config, ready for ``inference_detector(model, img, test_pipeline)``.

    Annotation loaders are dropped and ``LoadImageFromFile`` becomes mmdet's
    ``InferencerLoader``, so the same pipeline takes image paths and loaded (BGR) arrays.
    """
    pipeline = copy.deepcopy(list(get_test_pipeline_cfg(cfg)))
    pipeline = drop_annotation_loaders(pipeline)
    loaders = [i for i, t in enumerate(pipeline)
               if _transform_name(t) in ('LoadImageFromFile', 'InferencerLoader',
                                         'LoadImageFromNDArray')]
    if not loaders:
        raise ValueError('the test pipeline has no LoadImageFromFile transform')
    pipeline[loaders[0]]['type'] = 'mmdet.InferencerLoader'
    return Compose(pipeline)


def landmark_fields(data_sample: DetDataSample) -> Dict[str, list]:
    """JSON-ready landmark fields of ``data_sample.pred_instances``.

    Returns:
        dict: ``'keypoints'`` (``[[x, y]] * K`` per instance) and ``'vertices'``
        (``[[x, y, z]] * V`` per instance) for those fields the predictions hold, in the order
        of ``bboxes`` / ``scores``; empty without ``pred_instances`` or landmarks.
    """
    out = {}
    if 'pred_instances' not in data_sample:
        return out
    pred = data_sample.pred_instances
    for key in LANDMARK_FIELDS:
        if key in pred:
            value = pred.get(key)
            if hasattr(value, 'detach'):
                value = value.detach().cpu().numpy()
            out[key] = value.tolist()
    return out


def _pred_json_path(inferencer: DetInferencer, data_sample: DetDataSample,
                    pred_out_dir: str) -> str:
    """The JSON path ``DetInferencer.pred2dict`` has just written for ``data_sample``."""
    if 'img_path' in data_sample and data_sample.img_path:
        stem = osp.splitext(osp.basename(data_sample.img_path))[0]
    else:
        # pred2dict numbered the file with the counter it then incremented.
        stem = str(inferencer.num_predicted_imgs - 1)
    return osp.join(pred_out_dir, 'preds', stem + '.json')


def _add_landmarks(inferencer: DetInferencer, data_sample: DetDataSample, result: Dict,
                   pred_out_dir: str) -> Dict:
    extra = landmark_fields(data_sample)
    if not extra:
        return result
    result.update(extra)
    if pred_out_dir:
        mmengine.dump(result, _pred_json_path(inferencer, data_sample, pred_out_dir))
    return result


_det_pred2dict = getattr(DetInferencer.pred2dict, '__wrapped__', DetInferencer.pred2dict)


def _det_pred2dict_any_input(inferencer: DetInferencer, data_sample: DetDataSample,
                             pred_out_dir: str) -> Dict:
    """mmdet's ``pred2dict``, also for array inputs: their samples carry ``img_path=None``,
    on which mmdet calls ``osp.basename`` and fails; without the key it numbers the JSON file
    instead (the branch :func:`_pred_json_path` mirrors)."""
    if 'img_path' in data_sample and data_sample.img_path is None:
        data_sample = data_sample.clone()
        del data_sample.img_path
    return _det_pred2dict(inferencer, data_sample, pred_out_dir)


def install_det_inferencer_landmarks() -> None:
    """Make ``mmdet.apis.DetInferencer.pred2dict`` export landmarks (idempotent).

    The wrapper calls the original ``pred2dict`` unchanged, then, only when
    ``pred_instances`` has ``keypoints`` / ``vertices``, adds them to the returned dict and
    rewrites the JSON file the original wrote (when ``pred_out_dir`` is set). Predictions
    without landmarks give exactly the original output. Undo with
    :func:`uninstall_det_inferencer_landmarks`.
    """
    if getattr(DetInferencer.pred2dict, _WRAPPED_FLAG, False):
        return

    @functools.wraps(_det_pred2dict)
    def pred2dict(self, data_sample: DetDataSample, pred_out_dir: str = '') -> Dict:
        result = _det_pred2dict_any_input(self, data_sample, pred_out_dir)
        return _add_landmarks(self, data_sample, result, pred_out_dir)

    setattr(pred2dict, _WRAPPED_FLAG, True)
    DetInferencer.pred2dict = pred2dict


def uninstall_det_inferencer_landmarks() -> None:
    """Restore mmdet's original ``DetInferencer.pred2dict``."""
    DetInferencer.pred2dict = _det_pred2dict


def unreadable_reason(item) -> Optional[str]:
    """Why the image file ``item`` (a path) cannot be loaded, or None when it loads (or is
    not a path)."""
    return image_load_failure(item) if isinstance(item, str) else None


class FaceInferencer(DetInferencer):
    """Face detection inferencer: mmdet's :class:`DetInferencer` with landmarks.

    Differences from :class:`DetInferencer`:

    - predictions (returned dicts and ``preds/*.json``) hold ``keypoints``
      (``[[x, y]] * 5`` per face: left eye, right eye, nose, left / right mouth corner) and
      ``vertices`` when the model predicts them;
    - the visualiser is :class:`FaceLocalVisualizer` unless the config names a subclass of it
      (a ``DetLocalVisualizer`` config is upgraded, keeping its arguments);
    - annotation loaders (``LoadFaceAnnotations``, ``LoadAnnotations``) are removed from the test
      pipeline;
    - a checkpoint without class names (e.g. converted reference weights) takes the classes of
      the config's test dataset instead of COCO's;
    - given a folder or a list, images that cannot be read (corrupt or truncated files) are
      skipped with a warning each, counted, and listed under ``'skipped'`` in the returned
      dict (``[{'input': path, 'reason': str}]``); a single unreadable image still raises.

    Args:
        model (str | Config | dict, optional): Config file or object.
        weights (str, optional): Checkpoint path.
        device (str, optional): Device, e.g. ``'cpu'`` or ``'cuda:0'``; ``None`` picks one.
        scope (str): Registry scope. Defaults to ``'mmdet'``.
        palette (str): Palette for boxes. Defaults to ``'none'`` (config / checkpoint).
        show_progress (bool): Show a progress bar. Defaults to True.

    Example:
        >>> inferencer = FaceInferencer('configs/retinaface/<config>.py', weights='model.pth')
        >>> out = inferencer('photo.jpg', out_dir='outputs', no_save_pred=False)
        >>> out['predictions'][0]['keypoints'][0]  # five [x, y] of the first face
    """

    def __call__(self, inputs, *args, **kwargs) -> dict:
        """:meth:`DetInferencer.__call__`; with several inputs, unreadable images are skipped
        and listed under ``'skipped'`` (see the class docstring)."""
        many = isinstance(inputs, (list, tuple)) or (isinstance(inputs, str)
                                                     and osp.isdir(inputs))
        self._skip_unreadable, self.skipped_inputs = many, []
        try:
            results = super().__call__(inputs, *args, **kwargs)
        finally:
            self._skip_unreadable = False
        if many:
            results['skipped'] = [dict(input=i, reason=r) for i, r in self.skipped_inputs]
            if self.skipped_inputs:
                done = len(results['predictions'])
                print_log(f'{len(self.skipped_inputs)} of {done + len(self.skipped_inputs)} '
                          'images could not be read and were skipped', logger='current',
                          level=logging.WARNING)
        return results

    def _get_chunk_data(self, inputs, chunk_size: int):
        """Batches of ``(input, pipeline output)`` as in :class:`DetInferencer`; with several
        inputs an image whose file cannot be read is skipped (other errors still raise)."""
        if not getattr(self, '_skip_unreadable', False):
            yield from super()._get_chunk_data(inputs, chunk_size)
            return
        chunk = []
        for item in inputs:
            try:
                chunk.extend(next(super()._get_chunk_data([item], 1)))
            except Exception:
                reason = unreadable_reason(item)
                if reason is None:
                    raise
                print_log(f'skipped {item}: {reason}', logger='current', level=logging.WARNING)
                self.skipped_inputs.append((item, reason))
                continue
            if len(chunk) == chunk_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _init_pipeline(self, cfg: ConfigType) -> Compose:
        """Drop annotation loaders, then build the pipeline as :class:`DetInferencer` does."""
        dataset_cfg = cfg.test_dataloader.dataset
        dataset_cfg.pipeline = drop_annotation_loaders(list(dataset_cfg.pipeline))
        return super()._init_pipeline(cfg)

    def _init_visualizer(self, cfg: ConfigType) -> Optional[Visualizer]:
        """Build a :class:`FaceLocalVisualizer` (see the class docstring)."""
        vis_cfg = copy.deepcopy(cfg.get('visualizer', None)) or dict()
        vis_type = vis_cfg.get('type', None)
        vis_cls = VISUALIZERS.get(vis_type) if isinstance(vis_type, str) else vis_type
        if not (isinstance(vis_cls, type) and issubclass(vis_cls, FaceLocalVisualizer)):
            vis_cfg['type'] = FaceLocalVisualizer
        cfg = copy.copy(cfg)
        cfg.visualizer = vis_cfg
        return super()._init_visualizer(cfg)

    def _load_weights_to_model(self, model, checkpoint: Optional[dict],
                               cfg: Optional[ConfigType]) -> None:
        """Load weights; fall back to the test dataset's classes when the checkpoint has none."""
        meta = (checkpoint or {}).get('meta', {}) or {}
        has_classes = 'dataset_meta' in meta or 'CLASSES' in meta or cfg is None
        with warnings.catch_warnings():
            if not has_classes:
                # mmdet warns that it falls back to COCO classes; we use the config's instead.
                warnings.filterwarnings('ignore', message='.*COCO classes by default')
            super()._load_weights_to_model(model, checkpoint, cfg)
        if has_classes:
            return
        dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
        dataset_cfg['lazy_init'] = True
        classes = DATASETS.build(dataset_cfg).metainfo.get('classes', None)
        if classes:
            model.dataset_meta['classes'] = tuple(classes)
            print_log(f'the checkpoint names no classes: using the config\'s {tuple(classes)}',
                      logger='current')
        else:
            print_log('neither the checkpoint nor the config names classes: using COCO classes',
                      logger='current', level=logging.WARNING)

    def pred2dict(self, data_sample: DetDataSample, pred_out_dir: str = '') -> Dict:
        """mmdet's prediction dict plus ``keypoints`` / ``vertices`` when predicted.

        Returns:
            dict: ``labels``, ``scores``, ``bboxes`` and, when present, ``keypoints``
            (``[[x, y]] * 5`` per face) and ``vertices`` (``[[x, y, z]] * V`` per face), all in
            original-image pixels; also written to ``<pred_out_dir>/preds/<name>.json`` when
            ``pred_out_dir`` is given.
        """
        result = _det_pred2dict_any_input(self, data_sample, pred_out_dir)
        return _add_landmarks(self, data_sample, result, pred_out_dir)
