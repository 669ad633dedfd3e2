"""An assigner wrapper that carries facial landmarks (and dense vertices) to the positives."""
from typing import Optional

import torch
from mmdet.models.task_modules.assigners import AssignResult, BaseAssigner
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import bbox_overlaps, get_box_tensor
from mmdet.utils import ConfigType
from mmengine.structures import InstanceData


@TASK_UTILS.register_module()
class LandmarkAwareAssigner(BaseAssigner):
    """Wrap any mmdet assigner and attach the landmark annotations of the faces.

    The wrapped assigner decides positives / negatives / ignored priors from the boxes alone (e.g.
    ``MaxIoUAssigner``, which also honours ``gt_instances_ignore`` through ``ignore_iof_thr``, or
    ``ATSSAssigner``). Afterwards the annotations the box assigner does not know about are attached
    to the :class:`AssignResult` with ``set_extra_property``, one row per ground-truth face:

    - ``gt_keypoints`` (num_gts, K, 2) and ``gt_keypoints_valid`` (num_gts, K) in {0, 1};
    - ``gt_vertices`` (num_gts, V, 3) and ``gt_vertices_valid`` (num_gts,) when ``gt_instances``
      has ``vertices``.

    A prior's face is ``assign_result.gt_inds - 1`` (``sampling_result.pos_assigned_gt_inds`` for
    the positives), so the head gathers the positives' targets with those indices. The arrays are
    kept per face rather than per prior because a dense mesh per prior would cost
    ``num_priors * V * 3`` floats. Faces without landmarks (``keypoints_valid`` all 0, or no
    ``keypoints`` field at all) stay positives for classification and box regression; their
    points get weight 0 in the landmark loss.

    Args:
        assigner (dict): Config of the wrapped box assigner.
        num_keypoints (int): Landmarks per face, used when ``gt_instances`` has none.
            Defaults to 5.
    """

    def __init__(self, assigner: ConfigType, num_keypoints: int = 5) -> None:
        if not isinstance(assigner, (dict, BaseAssigner)):
            raise TypeError(f'assigner must be a config dict or an assigner, got {type(assigner)}')
        self.assigner = TASK_UTILS.build(assigner) if isinstance(assigner, dict) else assigner
        self.num_keypoints = num_keypoints

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None,
               **kwargs) -> AssignResult:
        """Assign with the wrapped assigner, then attach landmark annotations.

        Extra keyword arguments (e.g. ``num_level_priors`` for ``ATSSAssigner``) are forwarded by
        keyword, so assigners with different positional signatures can be wrapped.
        """
        result = self.assigner.assign(
            pred_instances=pred_instances,
            gt_instances=gt_instances,
            gt_instances_ignore=gt_instances_ignore,
            **kwargs)
        self._ignore_without_gts(result, pred_instances, gt_instances, gt_instances_ignore)
        for key, value in self.gt_annotations(gt_instances).items():
            result.set_extra_property(key, value)
        return result

    def _ignore_without_gts(self, result: AssignResult, pred_instances: InstanceData,
                            gt_instances: InstanceData,
                            gt_instances_ignore: Optional[InstanceData]) -> None:
        """Keep ignored faces ignored in an image with no other face.

        mmdet's ``MaxIoUAssigner`` (and ``ATSSAssigner``) return early when there is no ground
        truth and mark every prior negative, dropping the ``ignore_iof_thr`` mask: the anchors
        on an ignored face (WIDER's ``invalid`` faces) would then be trained as background, and
        OHEM would pick exactly them as the hardest negatives. Here priors whose IoF with an
        ignored box exceeds the wrapped assigner's ``ignore_iof_thr`` are set to ignored (-1)
        in that case, as they are when the image also has a regular face.
        """
        thr = getattr(self.assigner, 'ignore_iof_thr', -1)
        if (len(gt_instances) > 0 or gt_instances_ignore is None or len(gt_instances_ignore) == 0
                or thr is None or thr <= 0):
            return
        priors = get_box_tensor(pred_instances.priors)
        ignore_boxes = get_box_tensor(gt_instances_ignore.bboxes).to(priors)
        if getattr(self.assigner, 'ignore_wrt_candidates', True):
            iof = bbox_overlaps(priors, ignore_boxes, mode='iof').max(dim=1).values
        else:
            iof = bbox_overlaps(ignore_boxes, priors, mode='iof').max(dim=0).values
        result.gt_inds[iof > thr] = -1

    def gt_annotations(self, gt_instances: InstanceData) -> dict:
        """Per-face landmark (and vertex) arrays with validity, checked for consistent shapes."""
        return landmark_annotations(gt_instances, self.num_keypoints)


def landmark_annotations(gt_instances: InstanceData, num_keypoints: int = 5) -> dict:
    """Per-face ``gt_keypoints`` (N, K, 2), ``gt_keypoints_valid`` (N, K) and, when annotated,
    ``gt_vertices`` (N, V, 3), ``gt_vertices_valid`` (N,) of ``gt_instances``.

    Missing ``keypoints`` give zeros with validity 0 (``num_keypoints`` points per face); missing
    validity fields mean every point is valid. Shapes are checked against the boxes.
    """
    boxes = gt_instances.bboxes
    num_gts = len(boxes)
    device = boxes.device
    out = dict()
    if 'keypoints' in gt_instances:
        kpts = torch.as_tensor(gt_instances.keypoints, device=device).float()
        if kpts.dim() != 3 or kpts.size(0) != num_gts or kpts.size(-1) != 2:
            raise ValueError(f'gt_instances.keypoints must be ({num_gts}, K, 2), '
                             f'got {tuple(kpts.shape)}')
        if 'keypoints_valid' in gt_instances:
            valid = torch.as_tensor(gt_instances.keypoints_valid, device=device).float()
            if valid.shape != kpts.shape[:2]:
                raise ValueError(f'gt_instances.keypoints_valid must be '
                                 f'{tuple(kpts.shape[:2])}, got {tuple(valid.shape)}')
        else:
            valid = kpts.new_ones(kpts.shape[:2])
    else:
        kpts = torch.zeros((num_gts, num_keypoints, 2), device=device)
        valid = kpts.new_zeros((num_gts, num_keypoints))
    out['gt_keypoints'] = kpts
    out['gt_keypoints_valid'] = (valid > 0).float()
    if 'vertices' in gt_instances:
        verts = torch.as_tensor(gt_instances.vertices, device=device).float()
        if verts.dim() != 3 or verts.size(0) != num_gts or verts.size(-1) != 3:
            raise ValueError(f'gt_instances.vertices must be ({num_gts}, V, 3), '
                             f'got {tuple(verts.shape)}')
        if 'vertices_valid' in gt_instances:
            vvalid = torch.as_tensor(gt_instances.vertices_valid, device=device).float()
            vvalid = vvalid.reshape(-1)
            if vvalid.numel() != num_gts:
                raise ValueError(f'gt_instances.vertices_valid must be ({num_gts},), '
                                 f'got {tuple(vvalid.shape)}')
        else:
            vvalid = verts.new_ones(num_gts)
        out['gt_vertices'] = verts
        out['gt_vertices_valid'] = (vvalid > 0).float()
    return out
