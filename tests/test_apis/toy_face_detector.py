"""A tiny stand-in face detector for end-to-end tests of the inference tools.

Its predictions are fixed fractions of the original image (two faces with five landmarks each,
one above and one below the usual 0.3 score threshold), so tests know them exactly. It is
imported by configs through ``custom_imports`` and registered in mmdet's MODELS.
"""
import torch
import torch.nn as nn
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmengine.structures import InstanceData

# Relative boxes [x1, y1, x2, y2] (fractions of width / height) and scores of the two faces.
TOY_BOXES = ((0.2, 0.15, 0.6, 0.75), (0.65, 0.1, 0.95, 0.5))
TOY_SCORES = (0.9, 0.2)
# Landmarks as fractions of the box (ArcFace template / 112).
TOY_LANDMARKS = ((0.342, 0.462), (0.657, 0.460), (0.500, 0.641), (0.371, 0.825), (0.631, 0.823))


def toy_predictions(height: int, width: int, with_vertices: bool = False) -> dict:
    """The toy detector's predictions for an image of the given original size."""
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    bboxes = torch.tensor(TOY_BOXES, dtype=torch.float32) * scale
    rel = torch.tensor(TOY_LANDMARKS, dtype=torch.float32)
    wh = bboxes[:, 2:] - bboxes[:, :2]
    keypoints = bboxes[:, None, :2] + rel[None] * wh[:, None]
    out = dict(
        bboxes=bboxes,
        scores=torch.tensor(TOY_SCORES),
        labels=torch.zeros(len(TOY_BOXES), dtype=torch.long),
        keypoints=keypoints)
    if with_vertices:
        z = torch.zeros(len(TOY_BOXES), 5, 1)
        out['vertices'] = torch.cat([keypoints, z], dim=-1)
    return out


@MODELS.register_module()
class ToyFaceDetector(BaseDetector):
    """Detector returning :func:`toy_predictions` in original-image pixels (those scoring above
    ``test_cfg['score_thr']`` when it is given, as a real head keeps them)."""

    def __init__(self, with_vertices=False, backbone=None, data_preprocessor=None,
                 test_cfg=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.with_vertices = with_vertices
        self.test_cfg = test_cfg
        self.conv = nn.Conv2d(3, 1, 1)

    def extract_feat(self, batch_inputs):
        return self.conv(batch_inputs)

    def _forward(self, batch_inputs, batch_data_samples=None):
        return self.extract_feat(batch_inputs)

    def loss(self, batch_inputs, batch_data_samples):
        raise NotImplementedError('the toy detector cannot be trained')

    def predict(self, batch_inputs, batch_data_samples, rescale=True):
        results = []
        for sample in batch_data_samples:
            h, w = sample.metainfo['ori_shape'][:2]
            pred = InstanceData(**toy_predictions(h, w, self.with_vertices))
            if self.test_cfg and 'score_thr' in self.test_cfg:
                pred = pred[pred.scores > self.test_cfg['score_thr']]
            results.append(pred)
        return self.add_pred_to_datasample(batch_data_samples, results)


def toy_config(with_vertices=False, test_cfg=None):
    """A config dict for the toy detector with a face-style test pipeline."""
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(48, 48), keep_ratio=True),
        # Inference tools must drop it (there are no annotations).
        dict(type='LoadFaceAnnotations'),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
    ]
    return dict(
        default_scope='mmdet',
        custom_imports=dict(imports=['tests.test_apis.toy_face_detector'],
                            allow_failed_imports=False),
        model=dict(
            type='ToyFaceDetector',
            with_vertices=with_vertices,
            test_cfg=test_cfg,
            backbone=dict(type='none'),
            data_preprocessor=dict(type='DetDataPreprocessor')),
        test_dataloader=dict(
            batch_size=1,
            dataset=dict(
                type='CocoDataset', data_root='', ann_file='', metainfo=dict(classes=('face',)),
                test_mode=True, pipeline=pipeline)),
        visualizer=dict(type='DetLocalVisualizer', name='toy_visualizer'))
