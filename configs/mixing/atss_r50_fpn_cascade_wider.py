# mmdet's ATSS detector (R50-FPN, ATSS assignment) on WIDER FACE with the RetinaFace two-stage
# cascade head, landmarks off: stage 1 assigns anchors with ATSS, stage 2 (MaxIoU 0.5 / 0.4)
# regresses again from the stage-1 boxes. Any single-stage mmdet detector can take the head this
# way. Built from mmdet's model base and WIDER FACE (mmengine refuses keys defined by two bases,
# so mmdet's COCO ATSS config cannot sit next to the WIDER FACE dataset base).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    '../_base_/datasets/wider_face.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

custom_imports = dict(imports=['projects.retinaface'], allow_failed_imports=False)
default_scope = 'mmdet'

model = dict(
    type='ATSS',
    neck=dict(add_extra_convs='on_output'),
    bbox_head=dict(
        _delete_=True,
        type='CascadeRetinaFaceHead',
        num_classes=1,
        in_channels=256,
        with_landmarks=False,
        stage_loss_weights=(1.0, 1.0),
        stacked_convs=4,
        feat_channels=256,
        shared_head=True,
        pred_kernel_size=3,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        anchor_generator=dict(
            type='AnchorGenerator',
            ratios=[1.0],
            octave_base_scale=8,
            scales_per_octave=1,
            strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[0.0, 0.0, 0.0, 0.0],
            target_stds=[0.1, 0.1, 0.2, 0.2]),
        reg_decoded_bbox=True,
        loss_cls=dict(
            type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        _delete_=True,
        stage1=dict(
            assigner=dict(type='ATSSAssigner', topk=9),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        stage2=dict(
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=0.5,
                neg_iou_thr=0.4,
                min_pos_iou=0,
                match_low_quality=True,
                ignore_iof_thr=0.5),
            allowed_border=-1,
            pos_weight=-1,
            debug=False)),
    test_cfg=dict(score_thr=0.02, nms=dict(type='nms', iou_threshold=0.4), max_per_img=1000))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
