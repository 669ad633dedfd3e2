"""Visualiser that draws face boxes, scores and the five facial landmarks."""
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from mmdet.registry import VISUALIZERS
from mmdet.structures.bbox import BaseBoxes
from mmdet.visualization import DetLocalVisualizer
from mmengine.dist import master_only
from mmengine.structures import InstanceData

# One colour per landmark index (RGB), as in the widely used RetinaFace demo:
# left eye red, right eye yellow, nose magenta, left mouth corner green, right mouth corner blue.
LANDMARK_COLORS = ((255, 0, 0), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255))


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, BaseBoxes):
        value = value.tensor
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


@VISUALIZERS.register_module()
class FaceLocalVisualizer(DetLocalVisualizer):
    """Detection visualiser that also draws facial landmarks.

    Boxes, class names and scores are drawn by :class:`DetLocalVisualizer`; on top of them every
    landmark of ``instances.keypoints`` (N, K, 2) is drawn as a filled dot, with one colour per
    landmark index (``landmark_colors``). For ground truth only the points whose
    ``keypoints_valid`` (N, K) is positive are drawn; for predictions every finite point is drawn.
    Predicted dense ``vertices`` (N, V, 3), when present, are drawn as small dots.

    Ground truth of the test pipeline lives in network-input coordinates (see DEVELOPERS.md),
    while :class:`mmdet.engine.DetVisualizationHook` draws on the original image. With
    ``rescale_gt=True`` ground-truth boxes and landmarks are divided by ``scale_factor`` when the
    image to draw has the data sample's ``ori_shape`` but not its ``img_shape``.

    Args:
        landmark_colors (Sequence[tuple]): RGB colour per landmark index; index ``k`` uses
            ``landmark_colors[k % len(landmark_colors)]``. Defaults to :data:`LANDMARK_COLORS`.
        landmark_radius (float): Dot radius in pixels. Defaults to 2.
        landmark_alpha (float): Dot opacity. Defaults to 1.
        draw_vertices (bool): Draw predicted dense vertices when present. Defaults to True.
        vertex_color (tuple): RGB colour of the vertices. Defaults to (0, 255, 255).
        vertex_radius (float): Vertex dot radius in pixels. Defaults to 0.5.
        rescale_gt (bool): Map ground truth back to the original image (see above).
            Defaults to True.
        **kwargs: Arguments of :class:`DetLocalVisualizer` (``name``, ``vis_backends``,
            ``save_dir``, ``bbox_color``, ``text_color``, ``line_width``, ``alpha`` ...).
    """

    def __init__(self,
                 name: str = 'visualizer',
                 landmark_colors: Sequence[Tuple[int, int, int]] = LANDMARK_COLORS,
                 landmark_radius: float = 2.0,
                 landmark_alpha: float = 1.0,
                 draw_vertices: bool = True,
                 vertex_color: Tuple[int, int, int] = (0, 255, 255),
                 vertex_radius: float = 0.5,
                 rescale_gt: bool = True,
                 **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        if len(landmark_colors) == 0:
            raise ValueError('landmark_colors must hold at least one colour')
        if landmark_radius <= 0 or vertex_radius <= 0:
            raise ValueError('landmark_radius and vertex_radius must be positive, got '
                             f'{landmark_radius} and {vertex_radius}')
        self.landmark_colors = [tuple(int(c) for c in color) for color in landmark_colors]
        self.landmark_radius = float(landmark_radius)
        self.landmark_alpha = float(landmark_alpha)
        self.draw_vertices = draw_vertices
        self.vertex_color = tuple(int(c) for c in vertex_color)
        self.vertex_radius = float(vertex_radius)
        self.rescale_gt = rescale_gt

    def _draw_instances(self, image: np.ndarray, instances: InstanceData,
                        classes: Optional[List[str]],
                        palette: Optional[List[tuple]]) -> np.ndarray:
        """Draw boxes (by the parent class), then vertices and landmarks on top."""
        if 'bboxes' in instances and isinstance(instances.bboxes, BaseBoxes):
            instances = instances.clone()
            instances.bboxes = instances.bboxes.tensor
        drawn = super()._draw_instances(image, instances, classes, palette)
        if len(instances) == 0:
            return drawn
        # The canvas still holds the image with its boxes: draw the points on top.
        if self.draw_vertices and 'vertices' in instances:
            self._draw_vertices(_to_numpy(instances.vertices))
        if 'keypoints' in instances:
            valid = instances.get('keypoints_valid', None)
            self._draw_landmarks(
                _to_numpy(instances.keypoints), None if valid is None else _to_numpy(valid))
        return self.get_image()

    def _draw_vertices(self, vertices: np.ndarray) -> None:
        if vertices.ndim != 3 or vertices.shape[-1] < 2:
            raise ValueError(f'vertices must have shape (N, V, 3), got {vertices.shape}')
        points = vertices[..., :2].reshape(-1, 2).astype(np.float64)
        points = points[np.isfinite(points).all(axis=1)]
        if len(points) == 0:
            return
        self.draw_circles(
            points,
            np.full(len(points), self.vertex_radius),
            edge_colors=self.vertex_color,
            face_colors=self.vertex_color,
            line_widths=1,
            alpha=self.landmark_alpha)

    def _draw_landmarks(self, keypoints: np.ndarray, valid: Optional[np.ndarray]) -> None:
        if keypoints.ndim != 3 or keypoints.shape[-1] != 2:
            raise ValueError(f'keypoints must have shape (N, K, 2), got {keypoints.shape}')
        keep = np.isfinite(keypoints).all(axis=-1)
        if valid is not None:
            if valid.shape != keypoints.shape[:2]:
                raise ValueError(f'keypoints_valid must have shape {keypoints.shape[:2]}, '
                                 f'got {valid.shape}')
            keep &= valid > 0
        points, colors = [], []
        for k in range(keypoints.shape[1]):
            pts = keypoints[keep[:, k], k].astype(np.float64)
            points.append(pts)
            colors += [self.landmark_colors[k % len(self.landmark_colors)]] * len(pts)
        points = np.concatenate(points, axis=0)
        if len(points) == 0:
            return
        self.draw_circles(
            points,
            np.full(len(points), self.landmark_radius),
            edge_colors=colors,
            face_colors=colors,
            line_widths=1,
            alpha=self.landmark_alpha)

    def _gt_to_image(self, gt: InstanceData, metainfo: Dict,
                     image_shape: Tuple[int, int]) -> InstanceData:
        """Map ground truth from network-input to original-image coordinates if needed."""
        ori_shape = metainfo.get('ori_shape')
        img_shape = metainfo.get('img_shape')
        scale_factor = metainfo.get('scale_factor')
        if (not self.rescale_gt or scale_factor is None or ori_shape is None
                or img_shape is None or tuple(image_shape) != tuple(ori_shape[:2])
                or tuple(img_shape[:2]) == tuple(ori_shape[:2])):
            return gt
        sx, sy = float(scale_factor[0]), float(scale_factor[1])
        gt = gt.clone()
        if 'bboxes' in gt:
            bboxes = gt.bboxes.tensor if isinstance(gt.bboxes, BaseBoxes) else gt.bboxes
            gt.bboxes = bboxes / bboxes.new_tensor([sx, sy, sx, sy])
        for key in ('keypoints', 'vertices'):
            if key in gt:
                value = gt.get(key).clone().float()
                value[..., 0] /= sx
                value[..., 1] /= sy
                gt.set_field(value, key)
        return gt

    @master_only
    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample=None,
                       draw_gt: bool = True,
                       draw_pred: bool = True,
                       show: bool = False,
                       wait_time: float = 0,
                       out_file: Optional[str] = None,
                       pred_score_thr: float = 0.3,
                       step: int = 0) -> None:
        """Draw GT and/or predictions (boxes, scores, landmarks) and save or show the image.

        Arguments are those of :meth:`DetLocalVisualizer.add_datasample`; predictions with
        ``scores <= pred_score_thr`` are not drawn (their landmarks neither).
        """
        if data_sample is not None:
            data_sample = data_sample.cpu()
            if draw_gt and 'gt_instances' in data_sample:
                # ``cpu()`` made a new data sample: the caller's one is left untouched.
                data_sample.gt_instances = self._gt_to_image(
                    data_sample.gt_instances, data_sample.metainfo, image.shape[:2])
        super().add_datasample(
            name,
            image,
            data_sample=data_sample,
            draw_gt=draw_gt,
            draw_pred=draw_pred,
            show=show,
            wait_time=wait_time,
            out_file=out_file,
            pred_score_thr=pred_score_thr,
            step=step)


def draw_faces(image: np.ndarray,
               bboxes,
               scores=None,
               keypoints=None,
               score_thr: float = 0.0,
               box_color: Tuple[int, int, int] = (0, 255, 0),
               landmark_colors: Sequence[Tuple[int, int, int]] = LANDMARK_COLORS,
               thickness: Optional[int] = None) -> np.ndarray:
    """Draw face boxes, scores and landmarks on a copy of a BGR image with OpenCV.

    The fast path for video and cameras (about a millisecond per frame, where
    :class:`FaceLocalVisualizer`, drawing with matplotlib, takes a few hundred with 30 faces).
    Colours are RGB, as for the visualiser (landmark ``k`` in ``landmark_colors[k]``: the same
    colours in both). Faces with ``score <= score_thr`` are not drawn (as
    ``pred_score_thr`` in :meth:`FaceLocalVisualizer.add_datasample`); non-finite landmarks are
    skipped.

    Args:
        image (np.ndarray): (H, W, 3) uint8 BGR image; not modified.
        bboxes: (N, 4) ``x1, y1, x2, y2`` (array, tensor or box type).
        scores (optional): (N, ) scores, written above each box.
        keypoints (optional): (N, K, 2) landmarks.
        score_thr (float): See above.
        box_color (tuple): RGB box and text colour.
        landmark_colors (Sequence[tuple]): RGB colour per landmark index.
        thickness (int, optional): Line width; defaults to 1 px per 500 px of the short side
            (at least 1). Landmark dots have twice its radius.

    Returns:
        np.ndarray: The drawn copy.
    """
    out = np.array(image, copy=True, order='C')
    boxes = _to_numpy(bboxes).reshape(-1, 4).astype(np.float64)
    keep = np.ones(len(boxes), bool)
    if scores is not None:
        scores = _to_numpy(scores).reshape(-1)
        keep &= scores > score_thr
    points = None if keypoints is None else _to_numpy(keypoints).astype(np.float64)
    if thickness is None:
        thickness = max(1, int(round(min(out.shape[:2]) / 500)))
    bgr = tuple(int(c) for c in box_color[::-1])
    dot_colors = [tuple(int(c) for c in color[::-1]) for color in landmark_colors]
    scale = 0.4 * thickness
    for i in np.flatnonzero(keep):
        if not np.isfinite(boxes[i]).all():
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), bgr, thickness)
        if scores is not None:
            cv2.putText(out, f'{scores[i]:.2f}', (x1, max(y1 - 3 * thickness, 10)),
                        cv2.FONT_HERSHEY_SIMPLEX, scale, bgr, thickness, cv2.LINE_AA)
        if points is not None:
            for k, (x, y) in enumerate(points[i]):
                if np.isfinite(x) and np.isfinite(y):
                    cv2.circle(out, (int(round(x)), int(round(y))), 2 * thickness,
                               dot_colors[k % len(dot_colors)], -1, cv2.LINE_AA)
    return out
