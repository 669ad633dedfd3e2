# RetinaFace-MobileNet-0.25: the light model, architecture-compatible with the published
# MobileNet-0.25 weights of the widely used PyTorch implementation (convert them with
# tools/model_converters/pytorch_retinaface_to_mmdet.py). P3-P5 (strides 8/16/32), 64 channels,
# 2 anchors per level (16/32, 64/128, 256/512), box variances 0.1/0.2, 640x640 training crops,
# input BGR minus (104, 117, 123).
#
# Training starts from the ImageNet-pretrained MobileNetV1 x0.25; convert it first:
#   python tools/model_converters/mobilenetv1_imagenet_to_mmdet.py \
#       ../shared/weights/mobilenetV1X0.25_pretrain.tar checkpoints/mobilenetv1_x0.25_imagenet.pth
# Schedule: the reference implementation's (lr 1e-3, batch 32, 250 epochs, steps 190/220).
_base_ = [
    './_base_/models/retinaface_mnet025.py',
    './_base_/datasets/wider_face.py',
    './_base_/schedules/retinaface_mnet_250e.py',
    './_base_/default_runtime.py',
    './_base_/tta/face_tta.py',
]

pretrained_backbone = '{{ fileDirname }}/../checkpoints/mobilenetv1_x0.25_imagenet.pth'
model = dict(
    backbone=dict(
        init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=pretrained_backbone)))

train_dataloader = dict(batch_size=32)
