# The real WIDER FACE files of the shared data folder (../shared beside the repository root):
# 1,239 train images of five events with RetinaFace landmarks, and 11 val images.
#
# Held-out slice (fixed rule): every 10th image of retinaface_gt/train/label.txt in file order,
# i.e. the images with 0-based index i % 10 == 0 (124 images, 707 faces of which 650 have
# landmarks; all five events).
# Training uses the other 1,115 images; `held_out_dataloader` serves the slice (landmark NME,
# all-faces AP). Val/test: the 11 shared val images with the official val ground truth
# (eval_ground_truth/wider_face_val.mat; the other 3,215 val images are absent and skipped).
_base_ = './wider_face.py'

data_root = '{{ fileDirname }}/../../../../shared/data/widerface/'
held_out_rule = dict(every=10, offset=0)

train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        ann_file='retinaface_gt/train/label.txt',
        data_prefix=dict(img='WIDER_train/images/'),
        held_out=dict(held_out_rule, part='rest')))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        ann_file='eval_ground_truth/wider_face_val.mat',
        data_prefix=dict(img='WIDER_val/images/'),
        missing_images='skip'))
test_dataloader = val_dataloader

held_out_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='WIDERFaceDataset',
        data_root=data_root,
        ann_file='retinaface_gt/train/label.txt',
        data_prefix=dict(img='WIDER_train/images/'),
        held_out=dict(held_out_rule, part='held_out'),
        test_mode=True,
        pipeline={{_base_.test_pipeline}}))

val_evaluator = dict(type='WIDERFaceMetric', gt_dir=data_root + 'eval_ground_truth/')
test_evaluator = val_evaluator
held_out_evaluator = dict(type='LandmarkNMEMetric', iou_thr=0.5)
