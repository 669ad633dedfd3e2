# RetinaFace-MobileNet-0.25: architecture-compatible with the published reference weights.
# MobileNetV1 x0.25 (64/128/256 ch at strides 8/16/32) -> RetinaFaceFPN (64 ch) -> context
# module (64 ch) -> RetinaFaceHead with one 1x1 conv per level and task, 2 anchors per location
# (16/32, 64/128, 256/512 px centred in each cell), SSD box coding (0.1/0.2), landmark variance
# 0.1. Matching as the reference: positive IoU >= 0.35, each face's best anchor forced positive
# (IoU >= 0.2), OHEM 3:1, loss weights of the reference training (2 box + cls + landmarks).
# The backbone has init_cfg=None here; top-level configs may point it to converted ImageNet
# weights.
model = dict(
    type='RetinaFace',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[104.0, 117.0, 123.0],
        std=[1.0, 1.0, 1.0],
        bgr_to_rgb=False,
        pad_size_divisor=32),
    backbone=dict(type='MobileNetV1', widen_factor=0.25, out_indices=(0, 1, 2), init_cfg=None),
    neck=[
        dict(type='RetinaFaceFPN', in_channels=[64, 128, 256], out_channels=64),
        dict(type='ContextModule', in_channels=64, out_channels=64, num_levels=3),
    ],
    bbox_head=dict(
        type='RetinaFaceHead',
        num_classes=1,
        in_channels=64,
        feat_channels=64,
        stacked_convs=0,
        shared_head=False,
        pred_kernel_size=1,
        with_landmarks=True,
        num_keypoints=5,
        num_vertices=0,
        anchor_generator=dict(
            type='CachedAnchorGenerator',
            strides=[8, 16, 32],
            ratios=[1.0],
            scales=[1, 2],
            base_sizes=[16, 64, 256],
            centers=[(4, 4), (8, 8), (16, 16)]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=(0.0, 0.0, 0.0, 0.0),
            target_stds=(0.1, 0.1, 0.2, 0.2)),
        landmark_coder=dict(type='LandmarkCoder', num_keypoints=5, variance=0.1),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=2.0),
        loss_keypoints=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(
            type='LandmarkAwareAssigner',
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=0.35,
                neg_iou_thr=0.35,
                min_pos_iou=0.2,
                match_low_quality=True,
                gt_max_assign_all=False,
                ignore_iof_thr=0.5)),
        ohem=dict(type='OHEMNegativeMiner', neg_pos_ratio=3, min_neg=16),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    test_cfg=dict(
        nms_pre=5000,
        min_bbox_size=0,
        score_thr=0.02,
        nms=dict(type='nms', iou_threshold=0.4),
        max_per_img=750))
