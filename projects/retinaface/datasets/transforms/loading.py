"""Load face boxes, landmarks and optional vertices as :class:`KeypointBoxes`."""
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS

from projects.retinaface.structures import KeypointBoxes


@TRANSFORMS.register_module()
class LoadFaceAnnotations(BaseTransform):
    """Turn ``results['instances']`` into ``gt_bboxes`` / ``gt_bboxes_labels`` /
    ``gt_ignore_flags``.

    ``gt_bboxes`` is a :class:`KeypointBoxes` (float32) carrying ``keypoints`` (N, K, 2),
    ``keypoints_valid`` (N, K) and, when the instances have ``vertices``, ``vertices`` (N, V, 3)
    and ``vertices_valid`` (N,). ``gt_bboxes_labels`` is int64 (N,), ``gt_ignore_flags`` bool
    (N,). Results without ``instances`` (inference on a bare image) get empty annotations.

    Required keys: ``instances`` (optional). Added keys: ``gt_bboxes``, ``gt_bboxes_labels``,
    ``gt_ignore_flags``.

    Args:
        num_keypoints (int): K. Instances without ``keypoints`` get K invalid points.
            Defaults to 5.
        with_vertices (bool, optional): force (True) or disable (False) vertex loading;
            ``None`` (default) loads vertices when the first instance has them.
    """

    def __init__(self, num_keypoints: int = 5, with_vertices: Optional[bool] = None) -> None:
        self.num_keypoints = num_keypoints
        self.with_vertices = with_vertices

    def transform(self, results: dict) -> dict:
        """Build the annotation fields from ``results['instances']``."""
        instances = results.get('instances') or []
        k = self.num_keypoints
        n = len(instances)
        bboxes = np.zeros((n, 4), dtype=np.float32)
        labels = np.zeros((n, ), dtype=np.int64)
        ignore = np.zeros((n, ), dtype=bool)
        kpts = np.zeros((n, k, 2), dtype=np.float32)
        kvalid = np.zeros((n, k), dtype=np.float32)
        with_v = self.with_vertices
        if with_v is None:
            with_v = n > 0 and 'vertices' in instances[0]
        verts = vvalid = None
        for i, inst in enumerate(instances):
            bboxes[i] = inst['bbox']
            labels[i] = inst.get('bbox_label', 0)
            ignore[i] = bool(inst.get('ignore_flag', 0))
            if inst.get('keypoints') is not None:
                p = np.asarray(inst['keypoints'], dtype=np.float32).reshape(-1, 2)
                if len(p) != k:
                    raise ValueError(f'{results.get("img_path")}: instance {i} has {len(p)} '
                                     f'keypoints, expected {k}')
                kpts[i] = p
                kvalid[i] = np.asarray(inst.get('keypoints_valid', [1] * k), dtype=np.float32)
        if with_v:
            if n and any('vertices' not in inst for inst in instances):
                raise ValueError(f'{results.get("img_path")}: some instances lack vertices')
            num_v = len(instances[0]['vertices']) if n else 0
            verts = np.zeros((n, num_v, 3), dtype=np.float32)
            vvalid = np.zeros((n, ), dtype=np.float32)
            for i, inst in enumerate(instances):
                verts[i] = np.asarray(inst['vertices'], dtype=np.float32).reshape(num_v, 3)
                vvalid[i] = float(inst.get('vertices_valid', 1))
        results['gt_bboxes'] = KeypointBoxes(
            bboxes, keypoints=kpts, keypoints_valid=kvalid, vertices=verts,
            vertices_valid=vvalid, num_keypoints=k)
        results['gt_bboxes_labels'] = labels
        results['gt_ignore_flags'] = ignore
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_keypoints={self.num_keypoints}, '
                f'with_vertices={self.with_vertices})')
