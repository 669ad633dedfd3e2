# RetinaFace-R50 in the layout of the widely used PyTorch implementation
# (biubug6/Pytorch_Retinaface, its cfg_re50), architecture-compatible with its released
# Resnet50_Final.pth; convert it with
#   python tools/model_converters/pytorch_retinaface_to_mmdet.py Resnet50_Final.pth \
#       checkpoints/retinaface_r50_reference.pth --arch r50
# It is the MobileNet-0.25 model (configs/retinaface_mnet025_fpn.py) with a torchvision-style
# ResNet-50 body: C3-C5 (512/1024/2048 ch, strides 8/16/32) -> RetinaFaceFPN (256 ch) -> context
# module (256 ch, plain ReLU as the reference uses for > 64 channels) -> one 1x1 conv per level and
# task, 2 anchors per location (16/32, 64/128, 256/512), SSD box coding 0.1/0.2. Input as the
# reference (for both of its backbones): BGR minus (104, 117, 123), no scaling.
# This is NOT the paper's model (configs/retinaface_r50_fpn.py: P2-P6, cascade head, 3 anchors).
# Schedule: the reference's ResNet-50 recipe (lr 1e-3, batch 24, 100 epochs, steps 70/90, 840x840
# training crops).
_base_ = [
    './_base_/models/retinaface_mnet025.py',
    './_base_/datasets/wider_face.py',
    './_base_/schedules/retinaface_r50_100e.py',
    './_base_/default_runtime.py',
    './_base_/tta/face_tta.py',
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        # the reference starts from torchvision's ImageNet ResNet-50
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=[
        dict(type='RetinaFaceFPN', in_channels=[512, 1024, 2048], out_channels=256),
        dict(type='ContextModule', in_channels=256, out_channels=256, num_levels=3),
    ],
    bbox_head=dict(in_channels=256, feat_channels=256))

# The reference trains its ResNet-50 on 840x840 crops (cfg_re50 image_size).
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadFaceAnnotations'),
    dict(type='RandomSquareCrop', scale_range=(0.3, 1.0)),
    dict(type='PhotoMetricDistortion'),
    dict(type='Resize', scale=(840, 840), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackFaceInputs'),
]
train_dataloader = dict(batch_size=24, dataset=dict(pipeline=train_pipeline))
