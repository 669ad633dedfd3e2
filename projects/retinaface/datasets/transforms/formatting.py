"""Pack images and face annotations (boxes + landmarks + vertices) into a DetDataSample."""
import numpy as np
import torch
from mmdet.datasets.transforms import PackDetInputs
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import BaseBoxes, HorizontalBoxes

from projects.retinaface.structures import KeypointBoxes


@TRANSFORMS.register_module()
class PackFaceInputs(PackDetInputs):
    """``PackDetInputs`` that keeps the landmarks (and dense vertices) of the faces.

    ``data_samples.gt_instances`` (non-ignored faces) and ``data_samples.ignored_instances``
    (faces with ``gt_ignore_flags``; mmdet's field name for ignored ground truth) get:

    - ``bboxes``: plain ``HorizontalBoxes`` (N, 4), ``labels``: long (N,)
    - ``keypoints``: float (N, K, 2), ``keypoints_valid``: float (N, K) in {0, 1}
    - ``vertices``: float (N, V, 3), ``vertices_valid``: float (N,) when annotated

    all in network-input coordinates. When ``gt_bboxes`` carries no keypoints (plain boxes),
    ``keypoints`` are zeros with ``keypoints_valid`` 0. Meta keys are mmdet's defaults (which
    include ``img_id``); ``img_unreadable=True`` (a placeholder for a file that could not be
    decoded, see ``WIDERFaceDataset``'s ``undecodable_images``) is always kept, whatever
    ``meta_keys`` says, since the head and the metric must see it; a missing
    ``scale_factor`` (no resize in the pipeline) is recorded as ``(1.0, 1.0)`` so that
    ``rescale=True`` works on original-size inputs.

    Args:
        meta_keys (Sequence[str]): as in ``PackDetInputs``.
        num_keypoints (int): K used for boxes without keypoints. Defaults to 5.
    """

    def __init__(self,
                 meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
                            'flip', 'flip_direction'),
                 num_keypoints: int = 5) -> None:
        super().__init__(meta_keys=meta_keys)
        self.num_keypoints = num_keypoints

    def transform(self, results: dict) -> dict:
        """Pack ``results`` (see class docstring)."""
        if 'img' in results and 'scale_factor' not in results:
            results['scale_factor'] = (1.0, 1.0)
        packed = super().transform(results)
        if results.get('img_unreadable', False):
            packed['data_samples'].set_metainfo(dict(img_unreadable=True))
        boxes = results.get('gt_bboxes')
        if boxes is None:
            return packed
        if not isinstance(boxes, BaseBoxes):
            boxes = HorizontalBoxes(np.asarray(boxes, dtype=np.float32))
        if not isinstance(boxes, KeypointBoxes):
            boxes = KeypointBoxes(boxes.tensor, num_keypoints=self.num_keypoints)
        sample = packed['data_samples']
        if 'gt_ignore_flags' in results:
            flags = np.asarray(results['gt_ignore_flags'], dtype=bool)
            parts = ((sample.gt_instances, np.where(~flags)[0]),
                     (sample.ignored_instances, np.where(flags)[0]))
        else:
            parts = ((sample.gt_instances, np.arange(len(boxes))), )
        for inst, idx in parts:
            sub = boxes[torch.as_tensor(idx, dtype=torch.long)]
            inst.bboxes = HorizontalBoxes(sub.tensor.float(), clone=False)
            inst.keypoints = sub.keypoints.float()
            inst.keypoints_valid = sub.keypoints_valid.float()
            if sub.vertices is not None:
                inst.vertices = sub.vertices.float()
                inst.vertices_valid = sub.vertices_valid.float()
        return packed

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(meta_keys={self.meta_keys}, '
                f'num_keypoints={self.num_keypoints})')
