"""Two-stage cascade regression head of RetinaFace."""
import copy
from typing import List, Optional, Sequence, Tuple

from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.models.utils import select_single_mlvl
from mmdet.registry import MODELS
from mmdet.structures.bbox import get_box_tensor
from mmdet.utils import InstanceList, OptConfigType, OptInstanceList, OptMultiConfig
from mmengine.config import ConfigDict
from torch import Tensor

from .retinaface_head import RetinaFaceHead


def split_stage_train_cfgs(train_cfg, num_stages: int = 2) -> List[Optional[dict]]:
    """Split a cascade ``train_cfg`` (``dict(stage1=..., stage2=...)`` or a list) per stage."""
    if train_cfg is None:
        return [None] * num_stages
    if isinstance(train_cfg, (list, tuple)):
        cfgs = list(train_cfg)
    else:
        keys = [f'stage{i + 1}' for i in range(num_stages)]
        missing = [k for k in keys if k not in train_cfg]
        if missing:
            raise KeyError(f'a cascade train_cfg needs the keys {keys}; missing {missing}')
        cfgs = [train_cfg[k] for k in keys]
    if len(cfgs) != num_stages:
        raise ValueError(f'expected {num_stages} stage train_cfgs, got {len(cfgs)}')
    return cfgs


@MODELS.register_module()
class CascadeRetinaFaceHead(BaseDenseHead):
    """Two-stage cascade of :class:`RetinaFaceHead` (the paper's cascade regression).

    Stage 1 (``self.stage1``) classifies and regresses the anchors. Stage 2 (``self.stage2``,
    same input features, its own weights) uses the stage-1 regressed boxes, detached, as its
    priors: its targets are assigned and encoded against them, and at test time its deltas are
    decoded from them. Final scores, boxes, landmarks (and vertices) come from stage 2.

    Each stage has its own training config, e.g. stage 1 ``MaxIoUAssigner(0.7, 0.3)`` and stage 2
    ``MaxIoUAssigner(0.5, 0.4)``, each with its own OHEM. ``with_landmarks=False`` turns the
    landmark branches of both stages off, so the head serves as a plain cascade head in any mmdet
    single-stage detector. Losses are reported as ``s1.loss_cls``, ``s2.loss_bbox`` etc.

    State dict keys are those of :class:`RetinaFaceHead` under ``stage1.`` and ``stage2.``.

    Args:
        num_classes (int): Object classes. Defaults to 1.
        in_channels (int): Input channels. Defaults to 256.
        with_landmarks (bool): Landmark branches in both stages. Defaults to True.
        stage_loss_weights (Sequence[float]): Loss weight of each stage. Defaults to (1, 1).
        stage_overrides (Sequence[dict], optional): Per-stage keyword overrides of the shared
            head arguments.
        train_cfg (dict | list): ``dict(stage1=..., stage2=...)`` (or a 2-list), each a
            :class:`RetinaFaceHead` train_cfg.
        test_cfg (dict): Test config (of stage 2).
        init_cfg (dict, optional): Init config of this wrapper (each stage has its own).
        **head_kwargs: Shared :class:`RetinaFaceHead` arguments (anchor_generator, losses, ...).
    """

    num_stages = 2

    def __init__(self,
                 num_classes: int = 1,
                 in_channels: int = 256,
                 with_landmarks: bool = True,
                 stage_loss_weights: Sequence[float] = (1.0, 1.0),
                 stage_overrides: Optional[Sequence[dict]] = None,
                 train_cfg=None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None,
                 **head_kwargs) -> None:
        super().__init__(init_cfg=init_cfg)
        if len(stage_loss_weights) != self.num_stages:
            raise ValueError(f'stage_loss_weights needs {self.num_stages} values')
        if stage_overrides is None:
            stage_overrides = [dict() for _ in range(self.num_stages)]
        if len(stage_overrides) != self.num_stages:
            raise ValueError(f'stage_overrides needs {self.num_stages} dicts')
        head_kwargs.pop('type', None)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.stage_loss_weights = [float(w) for w in stage_loss_weights]
        stage_train_cfgs = split_stage_train_cfgs(train_cfg, self.num_stages)
        stages = []
        for i in range(self.num_stages):
            kwargs = copy.deepcopy(head_kwargs)
            kwargs.update(stage_overrides[i])
            kwargs.setdefault('with_landmarks', with_landmarks)
            stages.append(
                RetinaFaceHead(
                    num_classes=num_classes,
                    in_channels=in_channels,
                    train_cfg=stage_train_cfgs[i],
                    test_cfg=test_cfg if i == self.num_stages - 1 else None,
                    **kwargs))
        self.stage1, self.stage2 = stages
        if self.stage1.num_base_priors != self.stage2.num_base_priors:
            raise ValueError('both stages need the same anchors per location')
        self.num_classes = num_classes
        self.with_landmarks = self.stage2.with_landmarks
        self.num_keypoints = self.stage2.num_keypoints
        self.num_vertices = self.stage2.num_vertices

    @property
    def prior_generator(self):
        """The anchor generator (stage 1's; stage 2's priors are stage-1 boxes)."""
        return self.stage1.prior_generator

    @property
    def num_base_priors(self) -> int:
        """Anchors per location."""
        return self.stage1.num_base_priors

    def forward(self, x: Tuple[Tensor]) -> tuple:
        """Both stages on the same features.

        Returns:
            tuple: stage-1 ``cls_scores, bbox_preds, kpt_preds, vert_preds`` followed by the
            same four for stage 2.
        """
        return tuple(self.stage1(x)) + tuple(self.stage2(x))

    def refine_priors(self, anchors: Tensor, bbox_preds: List[Tensor]) -> Tensor:
        """Stage-2 priors: the stage-1 decoded boxes of each anchor, detached, unclipped.

        Args:
            anchors (Tensor): (N, 4) anchors of all levels, flattened like the predictions.
            bbox_preds (list[Tensor]): Stage-1 box deltas per level, (B, A*4, H, W).

        Returns:
            Tensor: (B, N, 4) boxes.
        """
        deltas = self.stage1._flatten([p.detach() for p in bbox_preds],
                                      self.stage1.bbox_coder.encode_size)
        anchors = get_box_tensor(anchors)
        num_imgs, num_priors = deltas.shape[:2]
        if anchors.size(0) != num_priors:
            raise ValueError(f'{anchors.size(0)} anchors but {num_priors} stage-1 predictions')
        boxes = self.stage1.bbox_coder.decode(
            anchors.repeat(num_imgs, 1), deltas.reshape(-1, deltas.size(-1)))
        return get_box_tensor(boxes).reshape(num_imgs, num_priors, 4).detach()

    def loss_by_feat(self,
                     cls_scores1: List[Tensor],
                     bbox_preds1: List[Tensor],
                     kpt_preds1: Optional[List[Tensor]],
                     vert_preds1: Optional[List[Tensor]],
                     cls_scores2: List[Tensor],
                     bbox_preds2: List[Tensor],
                     kpt_preds2: Optional[List[Tensor]],
                     vert_preds2: Optional[List[Tensor]],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Losses of both stages: stage 1 on the anchors, stage 2 on the stage-1 boxes."""
        flat_anchors, flat_valid, num_level_priors = self.stage1.flat_anchors(cls_scores1,
                                                                              batch_img_metas)
        losses1 = self.stage1.loss_by_priors(cls_scores1, bbox_preds1, kpt_preds1, vert_preds1,
                                             flat_anchors, flat_valid, num_level_priors,
                                             batch_gt_instances, batch_img_metas,
                                             batch_gt_instances_ignore)
        priors2 = self.refine_priors(flat_anchors[0], bbox_preds1)
        losses2 = self.stage2.loss_by_priors(cls_scores2, bbox_preds2, kpt_preds2, vert_preds2,
                                             list(priors2), flat_valid, num_level_priors,
                                             batch_gt_instances, batch_img_metas,
                                             batch_gt_instances_ignore)
        losses = dict()
        for i, stage_losses in enumerate((losses1, losses2)):
            w = self.stage_loss_weights[i]
            for k, v in stage_losses.items():
                losses[f's{i + 1}.{k}'] = v * w
        return losses

    def predict_by_feat(self,
                        cls_scores1: List[Tensor],
                        bbox_preds1: List[Tensor],
                        kpt_preds1: Optional[List[Tensor]],
                        vert_preds1: Optional[List[Tensor]],
                        cls_scores2: List[Tensor],
                        bbox_preds2: List[Tensor],
                        kpt_preds2: Optional[List[Tensor]] = None,
                        vert_preds2: Optional[List[Tensor]] = None,
                        batch_img_metas: Optional[List[dict]] = None,
                        cfg: Optional[ConfigDict] = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> InstanceList:
        """Stage-2 detections (scores, boxes, landmarks) decoded from the stage-1 boxes.

        Stage-2 scores are thresholded first; only the kept anchors are refined by stage 1 and
        decoded by stage 2.
        """
        featmap_sizes = [s.shape[-2:] for s in cls_scores2]
        mlvl_anchors = self.prior_generator.grid_priors(
            featmap_sizes, dtype=cls_scores2[0].dtype, device=cls_scores2[0].device)
        decode_prior = self.stage1.bbox_coder.decode
        results = []
        for img_id, img_meta in enumerate(batch_img_metas):
            results.append(
                self.stage2._predict_by_feat_single(
                    select_single_mlvl(cls_scores2, img_id, detach=True),
                    select_single_mlvl(bbox_preds2, img_id, detach=True),
                    select_single_mlvl(kpt_preds2, img_id, detach=True) if kpt_preds2 else None,
                    select_single_mlvl(vert_preds2, img_id, detach=True)
                    if vert_preds2 else None,
                    mlvl_anchors,
                    img_meta,
                    cfg,
                    rescale=rescale,
                    with_nms=with_nms,
                    prior_delta_list=select_single_mlvl(bbox_preds1, img_id, detach=True),
                    prior_decoder=decode_prior))
        return results
