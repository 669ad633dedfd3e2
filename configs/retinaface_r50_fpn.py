# RetinaFace-R50 (the paper recipe, Deng et al. CVPR 2020): ResNet-50 + FPN P2-P6 + context
# modules + two-stage cascade multi-task head (boxes, five landmarks), 3 anchors per level from
# 16 to 406 px (102,300 anchors at 640x640), OHEM 3:1; SGD lr 1e-2 with a 5-epoch warm-up from
# 1e-3, steps at epochs 55 and 68, 80 epochs, batch 32 in total (8 GPUs x 4 images), weight decay
# 5e-4. Train: bash tools/dist_train.sh configs/retinaface_r50_fpn.py 8
_base_ = [
    './_base_/models/retinaface_r50_fpn.py',
    './_base_/datasets/wider_face.py',
    './_base_/schedules/retinaface_80e.py',
    './_base_/default_runtime.py',
    './_base_/tta/face_tta.py',
]

train_dataloader = dict(batch_size=4)  # x 8 GPUs = 32
