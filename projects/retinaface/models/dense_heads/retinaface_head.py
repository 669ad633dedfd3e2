"""RetinaFace multi-task head: face score, box, five landmarks and optional dense vertices."""
import copy
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmdet.models.dense_heads import AnchorHead
from mmdet.models.task_modules.prior_generators import anchor_inside_flags
from mmdet.models.utils import multi_apply, select_single_mlvl, unmap
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures.bbox import get_box_tensor
from mmdet.utils import InstanceList, OptConfigType, OptInstanceList, OptMultiConfig
from mmengine.config import ConfigDict
from mmengine.model import bias_init_with_prob, normal_init
from mmengine.structures import InstanceData
from torch import Tensor

from ..task_modules.assigners.landmark_aware_assigner import landmark_annotations

#: Reference MobileNet-0.25 anchors: sizes 16/32, 64/128, 256/512 centred in each cell.
DEFAULT_ANCHOR_GENERATOR = dict(
    type='CachedAnchorGenerator',
    strides=[8, 16, 32],
    ratios=[1.0],
    scales=[1, 2],
    base_sizes=[16, 64, 256],
    centers=[(4, 4), (8, 8), (16, 16)])
#: The reference SSD box encoding (variances 0.1 / 0.2).
DEFAULT_BBOX_CODER = dict(
    type='DeltaXYWHBBoxCoder', target_means=(0.0, 0.0, 0.0, 0.0), target_stds=(0.1, 0.1, 0.2, 0.2))


def _default(cfg, default: dict) -> dict:
    return copy.deepcopy(default) if cfg is None else cfg


@MODELS.register_module()
class RetinaFaceHead(AnchorHead):
    """The multi-task head of RetinaFace (Deng et al., CVPR 2020).

    Per anchor it predicts a face score, a box (``DeltaXYWHBBoxCoder`` with stds
    0.1/0.1/0.2/0.2, which is the reference SSD encoding), five landmarks (``LandmarkCoder``) and,
    when ``num_vertices > 0``, ``V`` dense 3D vertices (``LandmarkCoder`` with ``num_dims=3``:
    x/y like landmarks, z divided by ``variance * sqrt(w * h)`` of the prior). The loss is
    ``L = L_cls + 0.25 L_box + 0.1 L_pts + 0.01 L_mesh`` with the default loss weights.

    Two layouts:

    - reference layout (``stacked_convs=0, shared_head=False, pred_kernel_size=1``): one 1x1
      conv per level and task, like ``ClassHead.i`` / ``BboxHead.i`` / ``LandmarkHead.i`` of the
      published weights. State dict keys: ``cls_heads.{i}.weight|bias``,
      ``reg_heads.{i}.weight|bias``, ``kpt_heads.{i}.weight|bias`` (and ``vert_heads.{i}``).
    - mmdet layout (``stacked_convs=4, shared_head=True, pred_kernel_size=3``): a RetinaNet-style
      tower ``cls_convs.0`` / ``reg_convs.0`` shared by all levels; landmarks and vertices are
      predicted from the regression tower.

    Output channels are anchor-major then values (mmdet's ``(B, A*C, H, W)`` that is read with
    ``permute(0, 2, 3, 1)``), which is also the reference's layout.

    Softmax channel order: with ``use_sigmoid=False`` the two class channels of every anchor are
    ``[face, background]`` (mmdet puts background at index ``num_classes``); the reference
    implementation uses ``[background, face]``, so a weights converter must swap the two output
    channels of each anchor in ``cls_heads.{i}``.

    Args:
        num_classes (int): Object classes (1 for faces).
        in_channels (int): Channels of the input feature maps.
        feat_channels (int): Channels of the stacked convs. Defaults to 256.
        stacked_convs (int): 3x3 convs before the predictors. Defaults to 0.
        shared_head (bool): Share all head weights across levels. Defaults to True.
        pred_kernel_size (int): Kernel size of the predictor convs. Defaults to 1.
        with_landmarks (bool): Predict landmarks. Defaults to True.
        num_keypoints (int): Landmarks per face. Defaults to 5.
        num_vertices (int): Dense 3D vertices per face; 0 turns the branch off.
        conv_cfg, norm_cfg, act_cfg (dict): Configs of the stacked convs.
        anchor_generator, bbox_coder (dict): As in :class:`AnchorHead`.
        landmark_coder (dict): Config of the landmark coder.
        vertex_variance (float): Variance of the vertex coder. Defaults to 0.1.
        loss_cls, loss_bbox (dict): As in :class:`AnchorHead`.
        loss_keypoints (dict): Landmark loss (over valid points). Defaults to SmoothL1, 0.1.
        loss_vertices (dict): Vertex loss (over faces with a mesh). Defaults to L1, 0.01.
        reg_decoded_bbox (bool): Regress decoded boxes (IoU-type losses). Defaults to False.
        train_cfg (dict): ``assigner``, optional ``sampler``, optional
            ``ohem=dict(type='OHEMNegativeMiner', neg_pos_ratio=3)``, ``allowed_border``
            (-1 keeps every anchor), ``pos_weight`` (-1: 1.0).
        test_cfg (dict): ``score_thr``, ``nms_pre`` (per level), ``nms``, ``max_per_img``,
            optional ``min_bbox_size``.
        init_cfg (dict): Initialisation config.
    """

    def __init__(self,
                 num_classes: int = 1,
                 in_channels: int = 256,
                 feat_channels: int = 256,
                 stacked_convs: int = 0,
                 shared_head: bool = True,
                 pred_kernel_size: int = 1,
                 with_landmarks: bool = True,
                 num_keypoints: int = 5,
                 num_vertices: int = 0,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 act_cfg: OptConfigType = None,
                 anchor_generator: OptConfigType = None,
                 bbox_coder: OptConfigType = None,
                 landmark_coder: OptConfigType = None,
                 vertex_variance: float = 0.1,
                 loss_cls: OptConfigType = None,
                 loss_bbox: OptConfigType = None,
                 loss_keypoints: OptConfigType = None,
                 loss_vertices: OptConfigType = None,
                 reg_decoded_bbox: bool = False,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        # None means the documented default (the reference MobileNet-0.25 anchors, SSD box
        # coding, the paper's loss weights, Normal(0, 0.01) init).
        act_cfg = _default(act_cfg, dict(type='ReLU'))
        anchor_generator = _default(anchor_generator, DEFAULT_ANCHOR_GENERATOR)
        bbox_coder = _default(bbox_coder, DEFAULT_BBOX_CODER)
        landmark_coder = _default(landmark_coder, dict(type='LandmarkCoder', variance=0.1))
        loss_cls = _default(loss_cls,
                            dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0))
        loss_bbox = _default(loss_bbox, dict(type='SmoothL1Loss', beta=1.0, loss_weight=0.25))
        loss_keypoints = _default(loss_keypoints,
                                  dict(type='SmoothL1Loss', beta=1.0, loss_weight=0.1))
        loss_vertices = _default(loss_vertices, dict(type='L1Loss', loss_weight=0.01))
        init_cfg = _default(init_cfg, dict(type='Normal', layer='Conv2d', std=0.01))
        if stacked_convs < 0:
            raise ValueError(f'stacked_convs must be >= 0, got {stacked_convs}')
        if num_vertices < 0:
            raise ValueError(f'num_vertices must be >= 0, got {num_vertices}')
        if pred_kernel_size % 2 != 1:
            raise ValueError(f'pred_kernel_size must be odd, got {pred_kernel_size}')
        self.stacked_convs = stacked_convs
        self.shared_head = shared_head
        self.pred_kernel_size = pred_kernel_size
        self.with_landmarks = with_landmarks
        self.num_keypoints = num_keypoints
        self.num_vertices = num_vertices
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg
        super().__init__(
            num_classes=num_classes,
            in_channels=in_channels,
            feat_channels=feat_channels,
            anchor_generator=anchor_generator,
            bbox_coder=bbox_coder,
            reg_decoded_bbox=reg_decoded_bbox,
            loss_cls=loss_cls,
            loss_bbox=loss_bbox,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            init_cfg=init_cfg)
        landmark_coder = dict(landmark_coder)
        landmark_coder.setdefault('num_keypoints', num_keypoints)
        self.landmark_coder = TASK_UTILS.build(landmark_coder)
        if self.landmark_coder.encode_size != 2 * num_keypoints:
            raise ValueError('landmark_coder must encode num_keypoints 2D points')
        self.loss_keypoints = MODELS.build(loss_keypoints) if with_landmarks else None
        if num_vertices > 0:
            self.vertex_coder = TASK_UTILS.build(
                dict(type='LandmarkCoder', num_keypoints=num_vertices, variance=vertex_variance,
                     num_dims=3))
            self.loss_vertices = MODELS.build(loss_vertices)
        else:
            self.vertex_coder = None
            self.loss_vertices = None
        self.ohem = None
        if self.train_cfg and self.train_cfg.get('ohem', None) is not None:
            self.ohem = TASK_UTILS.build(self.train_cfg['ohem'])

    # ------------------------------------------------------------------ layers
    def _init_layers(self) -> None:
        """Build towers and predictors (one set, or one per level)."""
        num_sets = 1 if self.shared_head else self.prior_generator.num_levels
        pred_in = self.feat_channels if self.stacked_convs > 0 else self.in_channels
        pad = self.pred_kernel_size // 2
        a = self.num_base_priors

        def tower():
            return nn.Sequential(*[
                ConvModule(
                    self.in_channels if i == 0 else self.feat_channels,
                    self.feat_channels,
                    3,
                    padding=1,
                    conv_cfg=self.conv_cfg,
                    norm_cfg=self.norm_cfg,
                    act_cfg=self.act_cfg) for i in range(self.stacked_convs)
            ])

        def preds(out_per_anchor):
            return nn.ModuleList([
                nn.Conv2d(pred_in, a * out_per_anchor, self.pred_kernel_size, padding=pad)
                for _ in range(num_sets)
            ])

        self.cls_convs = nn.ModuleList([tower() for _ in range(num_sets)])
        self.reg_convs = nn.ModuleList([tower() for _ in range(num_sets)])
        self.cls_heads = preds(self.cls_out_channels)
        self.reg_heads = preds(self.bbox_coder.encode_size)
        if self.with_landmarks:
            self.kpt_heads = preds(2 * self.num_keypoints)
        if self.num_vertices > 0:
            self.vert_heads = preds(3 * self.num_vertices)

    def init_weights(self) -> None:
        """Normal(0, 0.01) convs; sigmoid classifiers start at a 0.01 face prior."""
        super().init_weights()
        if self.use_sigmoid_cls:
            bias_cls = bias_init_with_prob(0.01)
            for conv in self.cls_heads:
                normal_init(conv, std=0.01, bias=bias_cls)

    def forward_single(self, x: Tensor, level: int = 0) -> tuple:
        """Predictions of one level: cls (B, A*C, H, W), box (B, A*4, H, W), landmarks
        (B, A*2K, H, W) or None, vertices (B, A*3V, H, W) or None."""
        i = 0 if self.shared_head else level
        cls_feat = self.cls_convs[i](x)
        reg_feat = self.reg_convs[i](x)
        cls_score = self.cls_heads[i](cls_feat)
        bbox_pred = self.reg_heads[i](reg_feat)
        kpt_pred = self.kpt_heads[i](reg_feat) if self.with_landmarks else None
        vert_pred = self.vert_heads[i](reg_feat) if self.num_vertices > 0 else None
        return cls_score, bbox_pred, kpt_pred, vert_pred

    def forward(self, x: Tuple[Tensor]) -> tuple:
        """Forward all levels.

        Returns:
            tuple: ``cls_scores``, ``bbox_preds`` (lists over levels), ``kpt_preds`` (list, or
            None when landmarks are off) and ``vert_preds`` (list, or None when off).
        """
        if len(x) != self.prior_generator.num_levels:
            raise ValueError(f'{type(self).__name__} expects {self.prior_generator.num_levels} '
                             f'feature levels (anchor_generator strides), got {len(x)}')
        outs = [self.forward_single(feat, level) for level, feat in enumerate(x)]
        cls_scores, bbox_preds, kpt_preds, vert_preds = (list(o) for o in zip(*outs))
        return (cls_scores, bbox_preds, kpt_preds if self.with_landmarks else None,
                vert_preds if self.num_vertices > 0 else None)

    # ----------------------------------------------------------------- targets
    def _get_targets_single(self,
                            flat_priors: Tensor,
                            valid_flags: Tensor,
                            num_level_priors: List[int],
                            gt_instances: InstanceData,
                            img_meta: dict,
                            gt_instances_ignore: Optional[InstanceData] = None) -> tuple:
        """Targets of one image for all its priors (anchors or refined boxes), shape (N, ...)."""
        flat_priors = get_box_tensor(flat_priors)
        inside_flags = anchor_inside_flags(flat_priors, valid_flags, img_meta['img_shape'][:2],
                                           self.train_cfg.get('allowed_border', -1))
        if not inside_flags.any():
            raise ValueError('No valid prior inside the image boundary; check the image size and '
                             'anchor sizes, or set train_cfg.allowed_border=-1.')
        priors = flat_priors[inside_flags]
        level_inside = [int(f.sum()) for f in torch.split(inside_flags, num_level_priors)]
        pred_instances = InstanceData(priors=priors)
        assign_result = self.assigner.assign(
            pred_instances=pred_instances,
            gt_instances=gt_instances,
            gt_instances_ignore=gt_instances_ignore,
            num_level_priors=level_inside)
        sampling_result = self.sampler.sample(assign_result, pred_instances, gt_instances)

        n = priors.size(0)
        box_dim = 4 if self.reg_decoded_bbox else self.bbox_coder.encode_size
        labels = priors.new_full((n, ), self.num_classes, dtype=torch.long)
        label_weights = priors.new_zeros(n)
        bbox_targets = priors.new_zeros(n, box_dim)
        bbox_weights = priors.new_zeros(n, box_dim)
        k2 = 2 * self.num_keypoints
        kpt_targets = priors.new_zeros(n, k2)
        kpt_weights = priors.new_zeros(n, k2)
        v3 = 3 * self.num_vertices
        vert_targets = priors.new_zeros(n, v3)
        vert_weights = priors.new_zeros(n, v3)

        pos_inds = sampling_result.pos_inds
        neg_inds = sampling_result.neg_inds
        if len(pos_inds) > 0:
            pos_priors = get_box_tensor(sampling_result.pos_priors)
            if self.reg_decoded_bbox:
                bbox_targets[pos_inds] = get_box_tensor(sampling_result.pos_gt_bboxes)
            else:
                bbox_targets[pos_inds] = self.bbox_coder.encode(
                    pos_priors, sampling_result.pos_gt_bboxes)
            bbox_weights[pos_inds] = 1.0
            labels[pos_inds] = sampling_result.pos_gt_labels
            pos_weight = self.train_cfg.get('pos_weight', -1)
            label_weights[pos_inds] = 1.0 if pos_weight <= 0 else pos_weight
            gt_idx = sampling_result.pos_assigned_gt_inds
            if self.with_landmarks or self.num_vertices > 0:
                ann = self._gt_annotations(assign_result, gt_instances)
            if self.with_landmarks:
                kpts = ann['gt_keypoints'][gt_idx]
                valid = ann['gt_keypoints_valid'][gt_idx]
                if kpts.size(1) != self.num_keypoints:
                    raise ValueError(f'head has num_keypoints={self.num_keypoints} but the '
                                     f'ground truth has {kpts.size(1)} keypoints per face')
                enc = self.landmark_coder.encode(kpts, pos_priors)
                w = valid.repeat_interleave(2, dim=1)
                kpt_targets[pos_inds] = torch.where(w > 0, enc, torch.zeros_like(enc))
                kpt_weights[pos_inds] = w
            if self.num_vertices > 0 and 'gt_vertices' in ann:
                verts = ann['gt_vertices'][gt_idx]
                if verts.size(1) != self.num_vertices:
                    raise ValueError(f'head has num_vertices={self.num_vertices} but the '
                                     f'ground truth has {verts.size(1)} vertices per face')
                enc = self.vertex_coder.encode(verts, pos_priors)
                w = ann['gt_vertices_valid'][gt_idx][:, None].expand_as(enc)
                vert_targets[pos_inds] = torch.where(w > 0, enc, torch.zeros_like(enc))
                vert_weights[pos_inds] = w
        if len(neg_inds) > 0:
            label_weights[neg_inds] = 1.0

        total = flat_priors.size(0)
        labels = unmap(labels, total, inside_flags, fill=self.num_classes)
        outs = [unmap(t, total, inside_flags) for t in
                (label_weights, bbox_targets, bbox_weights, kpt_targets, kpt_weights,
                 vert_targets, vert_weights)]
        return (labels, *outs, sampling_result)

    def _gt_annotations(self, assign_result, gt_instances: InstanceData) -> dict:
        """Landmark arrays from ``LandmarkAwareAssigner``; read ``gt_instances`` otherwise."""
        if assign_result.get_extra_property('gt_keypoints') is not None:
            return {
                k: assign_result.get_extra_property(k)
                for k in ('gt_keypoints', 'gt_keypoints_valid', 'gt_vertices',
                          'gt_vertices_valid')
                if assign_result.get_extra_property(k) is not None
            }
        return landmark_annotations(gt_instances, self.num_keypoints)

    def get_targets_by_priors(self,
                              priors_list: List[Tensor],
                              valid_flag_list: List[Tensor],
                              num_level_priors: List[int],
                              batch_gt_instances: InstanceList,
                              batch_img_metas: List[dict],
                              batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Targets of a batch; ``priors_list[i]`` is image i's (N, 4) priors, all levels.

        Returns:
            dict: ``labels`` (B, N), ``label_weights`` (B, N), ``bbox_targets``,
            ``bbox_weights`` (B, N, 4), ``kpt_targets``, ``kpt_weights`` (B, N, 2K),
            ``vert_targets``, ``vert_weights`` (B, N, 3V), ``num_pos`` (int) and
            ``sampling_results``.
        """
        if self.train_cfg is None:
            raise RuntimeError(f'{type(self).__name__} needs a train_cfg to compute losses')
        num_imgs = len(batch_img_metas)
        if batch_gt_instances_ignore is None:
            batch_gt_instances_ignore = [None] * num_imgs
        res = multi_apply(
            self._get_targets_single,
            priors_list,
            valid_flag_list,
            [num_level_priors] * num_imgs,
            batch_gt_instances,
            batch_img_metas,
            batch_gt_instances_ignore)
        names = ('labels', 'label_weights', 'bbox_targets', 'bbox_weights', 'kpt_targets',
                 'kpt_weights', 'vert_targets', 'vert_weights')
        targets = {name: torch.stack(res[i]) for i, name in enumerate(names)}
        sampling_results = res[len(names)]
        self._raw_positive_infos.update(sampling_results=sampling_results)
        targets['sampling_results'] = sampling_results
        targets['num_pos'] = sum(len(s.pos_inds) for s in sampling_results)
        return targets

    # -------------------------------------------------------------------- loss
    def flat_anchors(self, cls_scores: List[Tensor],
                     batch_img_metas: List[dict]) -> Tuple[List[Tensor], List[Tensor], List[int]]:
        """Anchors of the score maps' sizes, concatenated over levels: per image (N, 4)
        anchors and (N,) valid flags, and the number of anchors of each level."""
        featmap_sizes = [s.shape[-2:] for s in cls_scores]
        if len(featmap_sizes) != self.prior_generator.num_levels:
            raise ValueError('number of score maps does not match the anchor generator levels')
        anchor_list, valid_flag_list = self.get_anchors(
            featmap_sizes, batch_img_metas, device=cls_scores[0].device)
        num_level_priors = [a.size(0) for a in anchor_list[0]]
        return ([torch.cat(a) for a in anchor_list], [torch.cat(v) for v in valid_flag_list],
                num_level_priors)

    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     kpt_preds: Optional[List[Tensor]],
                     vert_preds: Optional[List[Tensor]],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Losses of the head on its anchors (see :meth:`loss_by_priors`)."""
        flat_anchors, flat_valid, num_level_priors = self.flat_anchors(cls_scores,
                                                                       batch_img_metas)
        return self.loss_by_priors(cls_scores, bbox_preds, kpt_preds, vert_preds, flat_anchors,
                                   flat_valid, num_level_priors, batch_gt_instances,
                                   batch_img_metas, batch_gt_instances_ignore)

    def _flatten(self, preds: List[Tensor], dim: int, batch=None) -> Tensor:
        """(B, A*dim, H, W) per level -> (B, sum(H*W*A), dim), location-major, anchor-minor.

        ``batch``: B when known (the ONNX exporter passes the input's batch size, so that the
        graph does not read it from the shape of a feature map)."""
        b = preds[0].size(0) if batch is None else batch
        return torch.cat([p.permute(0, 2, 3, 1).reshape(b, -1, dim) for p in preds], dim=1)

    def loss_by_priors(self,
                       cls_scores: List[Tensor],
                       bbox_preds: List[Tensor],
                       kpt_preds: Optional[List[Tensor]],
                       vert_preds: Optional[List[Tensor]],
                       priors_list: List[Tensor],
                       valid_flag_list: List[Tensor],
                       num_level_priors: List[int],
                       batch_gt_instances: InstanceList,
                       batch_img_metas: List[dict],
                       batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Losses given each image's flat priors (anchors, or a previous stage's boxes).

        Classification uses every positive and negative, or, with ``train_cfg.ohem``, every
        positive plus the hardest negatives of each image. The classification and box losses are
        averaged over the positives of the batch, the landmark loss over the positives whose face
        has at least one valid landmark, the vertex loss over positives with a mesh (each at
        least 1, so a batch without faces gives exact zeros for the regression losses).
        """
        t = self.get_targets_by_priors(priors_list, valid_flag_list, num_level_priors,
                                       batch_gt_instances, batch_img_metas,
                                       batch_gt_instances_ignore)
        num_imgs = len(batch_img_metas)
        c = self.cls_out_channels
        cls_score = self._flatten(cls_scores, c)
        bbox_pred = self._flatten(bbox_preds, self.bbox_coder.encode_size)
        if cls_score.size(1) != t['labels'].size(1):
            raise ValueError(f'{cls_score.size(1)} predictions but {t["labels"].size(1)} priors')
        labels = t['labels']
        label_weights = t['label_weights']
        avg_factor = max(float(t['num_pos']), 1.0)

        if self.ohem is not None:
            per_prior = self.loss_cls(
                cls_score.reshape(-1, c),
                labels.reshape(-1),
                label_weights.reshape(-1),
                reduction_override='none')
            if per_prior.dim() > 1:
                per_prior = per_prior.sum(-1)
            per_prior = per_prior.reshape(num_imgs, -1)
            valid = label_weights > 0
            keep = torch.stack([
                self.ohem.mine(per_prior[i], valid[i] & (labels[i] < self.num_classes),
                               valid[i] & (labels[i] == self.num_classes))
                for i in range(num_imgs)
            ])
            loss_cls = (per_prior * keep.to(per_prior.dtype)).sum() / avg_factor
        else:
            loss_cls = self.loss_cls(
                cls_score.reshape(-1, c),
                labels.reshape(-1),
                label_weights.reshape(-1),
                avg_factor=avg_factor)

        if self.reg_decoded_bbox:
            priors = torch.cat([get_box_tensor(p) for p in priors_list])
            bbox_pred = get_box_tensor(
                self.bbox_coder.decode(priors, bbox_pred.reshape(-1, bbox_pred.size(-1))))
        box_dim = t['bbox_targets'].size(-1)
        loss_bbox = self.loss_bbox(
            bbox_pred.reshape(-1, box_dim),
            t['bbox_targets'].reshape(-1, box_dim),
            t['bbox_weights'].reshape(-1, box_dim),
            avg_factor=avg_factor)
        losses = dict(loss_cls=loss_cls, loss_bbox=loss_bbox)

        if self.with_landmarks:
            k2 = 2 * self.num_keypoints
            kpt_pred = self._flatten(kpt_preds, k2)
            kw = t['kpt_weights']
            num_kpt = max(float((kw.sum(-1) > 0).sum()), 1.0)
            losses['loss_kpt'] = self.loss_keypoints(
                kpt_pred.reshape(-1, k2), t['kpt_targets'].reshape(-1, k2), kw.reshape(-1, k2),
                avg_factor=num_kpt)
        if self.num_vertices > 0:
            v3 = 3 * self.num_vertices
            vert_pred = self._flatten(vert_preds, v3)
            vw = t['vert_weights']
            num_vert = max(float((vw.sum(-1) > 0).sum()), 1.0)
            losses['loss_vert'] = self.loss_vertices(
                vert_pred.reshape(-1, v3), t['vert_targets'].reshape(-1, v3), vw.reshape(-1, v3),
                avg_factor=num_vert)
        return losses

    # ----------------------------------------------------------------- predict
    def predict_by_feat(self,
                        cls_scores: List[Tensor],
                        bbox_preds: List[Tensor],
                        kpt_preds: Optional[List[Tensor]] = None,
                        vert_preds: Optional[List[Tensor]] = None,
                        batch_img_metas: Optional[List[dict]] = None,
                        cfg: Optional[ConfigDict] = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> InstanceList:
        """Detections of each image: ``bboxes`` (N, 4), ``scores``, ``labels``, ``keypoints``
        (N, K, 2) and, with the dense branch, ``vertices`` (N, V, 3); all fields stay aligned
        through thresholding, ``nms_pre``, NMS and ``max_per_img``."""
        num_levels = len(cls_scores)
        featmap_sizes = [cls_scores[i].shape[-2:] for i in range(num_levels)]
        mlvl_priors = self.prior_generator.grid_priors(
            featmap_sizes, dtype=cls_scores[0].dtype, device=cls_scores[0].device)
        results = []
        for img_id, img_meta in enumerate(batch_img_metas):
            results.append(
                self._predict_by_feat_single(
                    select_single_mlvl(cls_scores, img_id, detach=True),
                    select_single_mlvl(bbox_preds, img_id, detach=True),
                    select_single_mlvl(kpt_preds, img_id, detach=True) if kpt_preds else None,
                    select_single_mlvl(vert_preds, img_id, detach=True) if vert_preds else None,
                    mlvl_priors,
                    img_meta,
                    cfg,
                    rescale=rescale,
                    with_nms=with_nms))
        return results

    def _predict_by_feat_single(self,
                                cls_score_list: List[Tensor],
                                bbox_pred_list: List[Tensor],
                                kpt_pred_list: Optional[List[Tensor]],
                                vert_pred_list: Optional[List[Tensor]],
                                mlvl_priors: List[Tensor],
                                img_meta: dict,
                                cfg: Optional[ConfigDict],
                                rescale: bool = False,
                                with_nms: bool = True,
                                prior_delta_list: Optional[List[Tensor]] = None,
                                prior_decoder: Optional[Callable] = None) -> InstanceData:
        """One image. Scores are thresholded (and ``nms_pre`` top-k taken per level) before any
        decoding. ``prior_delta_list`` + ``prior_decoder`` (cascade) first refine the kept
        priors with a previous stage's box deltas."""
        cfg = self.test_cfg if cfg is None else cfg
        if cfg is None:
            raise RuntimeError(f'{type(self).__name__} needs a test_cfg to predict')
        cfg = ConfigDict(copy.deepcopy(cfg))
        score_thr = cfg.get('score_thr', 0)
        nms_pre = cfg.get('nms_pre', -1)
        fields = dict(bbox=[], priors=[], scores=[], labels=[], kpt=[], vert=[], prior_delta=[])
        for lvl, (cls_score, bbox_pred, priors) in enumerate(
                zip(cls_score_list, bbox_pred_list, mlvl_priors)):
            cls_score = cls_score.permute(1, 2, 0).reshape(-1, self.cls_out_channels)
            if self.use_sigmoid_cls:
                scores = cls_score.sigmoid()
            else:
                scores = cls_score.softmax(-1)[:, :-1]
            valid_idxs = torch.nonzero(scores > score_thr)
            kept_scores = scores[valid_idxs[:, 0], valid_idxs[:, 1]]
            if 0 < nms_pre < kept_scores.numel():
                kept_scores, order = kept_scores.topk(nms_pre)
                valid_idxs = valid_idxs[order]
            keep, labels = valid_idxs.unbind(dim=1)
            fields['scores'].append(kept_scores)
            fields['labels'].append(labels)
            fields['priors'].append(get_box_tensor(priors)[keep])
            dim = self.bbox_coder.encode_size
            fields['bbox'].append(bbox_pred.permute(1, 2, 0).reshape(-1, dim)[keep])
            if kpt_pred_list is not None:
                fields['kpt'].append(kpt_pred_list[lvl].permute(1, 2, 0).reshape(
                    -1, 2 * self.num_keypoints)[keep])
            if vert_pred_list is not None:
                fields['vert'].append(vert_pred_list[lvl].permute(1, 2, 0).reshape(
                    -1, 3 * self.num_vertices)[keep])
            if prior_delta_list is not None:
                pd = prior_delta_list[lvl]
                fields['prior_delta'].append(pd.permute(1, 2, 0).reshape(-1, pd.size(0) //
                                                                         self.num_base_priors)[keep])
        priors = torch.cat(fields['priors'])
        if prior_delta_list is not None:
            priors = get_box_tensor(prior_decoder(priors, torch.cat(fields['prior_delta'])))
        results = InstanceData()
        results.bboxes = get_box_tensor(
            self.bbox_coder.decode(priors, torch.cat(fields['bbox']),
                                   max_shape=img_meta['img_shape']))
        results.scores = torch.cat(fields['scores'])
        results.labels = torch.cat(fields['labels'])
        if kpt_pred_list is not None:
            results.keypoints = self.landmark_coder.decode(priors, torch.cat(fields['kpt']))
        if vert_pred_list is not None:
            results.vertices = self.vertex_coder.decode(priors, torch.cat(fields['vert']))
        results = self._bbox_post_process(
            results=results, cfg=cfg, rescale=rescale, with_nms=with_nms, img_meta=img_meta)
        if img_meta.get('img_unreadable'):
            # a placeholder for a file that could not be decoded (WIDERFaceDataset's
            # undecodable_images): no faces
            results = results[:0]
        return results

    def _bbox_post_process(self,
                           results: InstanceData,
                           cfg: ConfigDict,
                           rescale: bool = False,
                           with_nms: bool = True,
                           img_meta: Optional[dict] = None) -> InstanceData:
        """Rescale landmarks / vertices like boxes, then mmdet's box post-processing (which
        indexes every field of ``results`` together)."""
        if rescale:
            if img_meta is None or img_meta.get('scale_factor') is None:
                raise ValueError('rescale=True needs img_meta["scale_factor"]')
            sx, sy = (float(s) for s in img_meta['scale_factor'][:2])
            if 'keypoints' in results:
                results.keypoints = results.keypoints / results.keypoints.new_tensor([sx, sy])
            if 'vertices' in results:
                results.vertices = results.vertices / results.vertices.new_tensor(
                    [sx, sy, (sx * sy)**0.5])
        return super()._bbox_post_process(
            results=results, cfg=cfg, rescale=rescale, with_nms=with_nms, img_meta=img_meta)

