# A stock mmdet RetinaNet (the model of mmdet's retinanet_r50_fpn_1x_coco.py: its model base,
# 1x schedule with lr 0.01 and default runtime) on WIDER FACE, whose neck gains the RetinaFace
# context module and whose head is the RetinaFace multi-task head (sigmoid focal classification,
# boxes, 5 landmarks) for one class. The COCO config itself cannot be a base next to the WIDER
# FACE dataset base (mmengine refuses keys defined by two bases), hence its components.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    '../_base_/datasets/wider_face.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

custom_imports = dict(imports=['projects.retinaface'], allow_failed_imports=False)
default_scope = 'mmdet'

model = dict(
    neck=[
        dict(
            type='FPN',
            in_channels=[256, 512, 1024, 2048],
            out_channels=256,
            start_level=1,
            add_extra_convs='on_input',
            num_outs=5),
        dict(type='ContextModule', in_channels=256, out_channels=256, num_levels=5),
    ],
    bbox_head=dict(
        type='RetinaFaceHead',
        num_classes=1,
        # RetinaNet layout: 4 shared 3x3 convs per tower, 3x3 predictors, shared by all levels
        shared_head=True,
        pred_kernel_size=3,
        with_landmarks=True,
        num_keypoints=5,
        landmark_coder=dict(type='LandmarkCoder', num_keypoints=5, variance=0.1),
        loss_keypoints=dict(type='SmoothL1Loss', beta=1.0, loss_weight=0.1)),
    train_cfg=dict(
        assigner=dict(
            _delete_=True,
            type='LandmarkAwareAssigner',
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=0.5,
                neg_iou_thr=0.4,
                min_pos_iou=0,
                ignore_iof_thr=0.5))),
    test_cfg=dict(score_thr=0.02, nms=dict(type='nms', iou_threshold=0.4), max_per_img=1000))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
