# RetinaFace-R50 (Deng et al., CVPR 2020): ResNet-50, FPN P2-P6, context module on every level,
# two-stage cascade multi-task head (face score, box, 5 landmarks), OHEM 3:1.
# Anchors: 3 per location, 2^(k/3) steps from 16 to 406 px, centred in their cell:
# 640x640 -> (160^2 + 80^2 + 40^2 + 20^2 + 10^2) * 3 = 102,300 anchors.
model = dict(
    type='RetinaFace',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=[
        # P2-P5 from C2-C5; P6 = 3x3 stride-2 conv on C5 ('on_input').
        dict(
            type='FPN',
            in_channels=[256, 512, 1024, 2048],
            out_channels=256,
            start_level=0,
            add_extra_convs='on_input',
            num_outs=5),
        dict(type='ContextModule', in_channels=256, out_channels=256, num_levels=5),
    ],
    bbox_head=dict(
        type='CascadeRetinaFaceHead',
        num_classes=1,
        in_channels=256,
        with_landmarks=True,
        stage_loss_weights=(1.0, 1.0),
        # shared RetinaFaceHead arguments of both stages
        feat_channels=256,
        stacked_convs=0,
        shared_head=False,
        pred_kernel_size=1,
        num_keypoints=5,
        num_vertices=0,
        anchor_generator=dict(
            type='CachedAnchorGenerator',
            strides=[4, 8, 16, 32, 64],
            ratios=[1.0],
            scales=[1.0, 2**(1.0 / 3.0), 2**(2.0 / 3.0)],
            base_sizes=[16, 32, 64, 128, 256],
            centers=[(2.0, 2.0), (4.0, 4.0), (8.0, 8.0), (16.0, 16.0), (32.0, 32.0)]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=(0.0, 0.0, 0.0, 0.0),
            target_stds=(0.1, 0.1, 0.2, 0.2)),
        landmark_coder=dict(type='LandmarkCoder', num_keypoints=5, variance=0.1),
        # paper: L = L_cls + 0.25 L_box + 0.1 L_pts
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=0.25),
        loss_keypoints=dict(type='SmoothL1Loss', beta=1.0, loss_weight=0.1)),
    train_cfg=dict(
        # stage 1 on anchors: positive IoU >= 0.7, negative < 0.3
        stage1=dict(
            assigner=dict(
                type='LandmarkAwareAssigner',
                assigner=dict(
                    type='MaxIoUAssigner',
                    pos_iou_thr=0.7,
                    neg_iou_thr=0.3,
                    min_pos_iou=0.2,
                    match_low_quality=True,
                    gt_max_assign_all=False,
                    ignore_iof_thr=0.5)),
            ohem=dict(type='OHEMNegativeMiner', neg_pos_ratio=3, min_neg=16),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        # stage 2 on the stage-1 boxes: positive IoU >= 0.5, negative < 0.4
        stage2=dict(
            assigner=dict(
                type='LandmarkAwareAssigner',
                assigner=dict(
                    type='MaxIoUAssigner',
                    pos_iou_thr=0.5,
                    neg_iou_thr=0.4,
                    min_pos_iou=0.2,
                    match_low_quality=True,
                    gt_max_assign_all=False,
                    ignore_iof_thr=0.5)),
            ohem=dict(type='OHEMNegativeMiner', neg_pos_ratio=3, min_neg=16),
            allowed_border=-1,
            pos_weight=-1,
            debug=False)),
    test_cfg=dict(
        nms_pre=5000,
        min_bbox_size=0,
        score_thr=0.02,
        nms=dict(type='nms', iou_threshold=0.4),
        max_per_img=2000))
