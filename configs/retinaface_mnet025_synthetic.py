# Quick start: RetinaFace-MobileNet-0.25 trained from scratch on the synthetic WIDER-format data,
# a few CPU minutes end to end (no download, no pretrained weights). From the repository root:
#   python tools/dataset_converters/make_synthetic_wider.py data/synthetic_wider
#   python tools/train.py configs/retinaface_mnet025_synthetic.py
#   python tools/test.py configs/retinaface_mnet025_synthetic.py \
#       work_dirs/retinaface_mnet025_synthetic/epoch_60.pth [--tta] [--show-dir vis] [--out r.pkl]
# 60 epochs of 7 iterations (batch 8, 320x320): about 4.5 minutes on 2 CPU cores with
# OMP_NUM_THREADS=1 (which also avoids the slow-down of spinning OpenMP threads on a shared CPU),
# validation every 10 epochs. With seed 0 the final model reached WIDER AP easy/medium/hard
# 0.94/0.68/0.42 and landmark NME 0.087 on the 16 val images (--tta: 0.96/0.75/0.53, NME 0.066);
# a short run from scratch varies with the seed and thread count (README, "Quick start": easy AP
# 0.91-0.99 over three seeds and two thread counts).
#
# Data elsewhere: set the environment variable SYNTHETIC_WIDER_ROOT (mmengine substitutes it when
# the config is read; every dataloader and the evaluators' gt_dir follow it), e.g.
#   SYNTHETIC_WIDER_ROOT=/tmp/synth python tools/train.py configs/retinaface_mnet025_synthetic.py
# `--cfg-options data_root=...` does NOT work (mmengine has already built the paths from
# data_root when the options are merged); the explicit keys are
#   train_dataloader.dataset.data_root=/tmp/synth/ val_dataloader.dataset.data_root=/tmp/synth/
#   test_dataloader.dataset.data_root=/tmp/synth/
#   val_evaluator.0.gt_dir=/tmp/synth/eval_ground_truth/
#   test_evaluator.0.gt_dir=/tmp/synth/eval_ground_truth/
# (the evaluators are a list here: WIDERFaceMetric is item 0, LandmarkNMEMetric item 1).
_base_ = [
    './_base_/models/retinaface_mnet025.py',
    './_base_/datasets/wider_face_synthetic.py',
    './_base_/default_runtime.py',
    './_base_/tta/face_tta.py',
]

# gt_dir below is data_root + 'eval_ground_truth/': make sure data_root ends with '/'.
data_root = '{{$SYNTHETIC_WIDER_ROOT:{{ fileDirname }}/../data/synthetic_wider/}}'
data_root = data_root if data_root.endswith('/') else data_root + '/'

# Backbone from scratch (no pretrained weights), so it runs on a fresh machine.
model = dict(backbone=dict(init_cfg=None))

# Smaller training input than the paper's 640x640: the synthetic images are 320-640 px wide.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadFaceAnnotations'),
    dict(type='RandomSquareCrop', scale_range=(0.5, 1.0)),
    dict(type='Resize', scale=(320, 320), keep_ratio=False),
    # after the resize: the same augmentation on fewer pixels (cheaper on a CPU)
    dict(type='PhotoMetricDistortion'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackFaceInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=2, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='WIDERFaceMetric', gt_dir=data_root + 'eval_ground_truth/'),
    dict(type='LandmarkNMEMetric', iou_thr=0.5),
]
test_evaluator = val_evaluator

# Short schedule: AdamW lr 2e-3 (batch 8; no weight decay on norms and biases) with a one-epoch
# linear warm-up from 0.1x, cosine decay to 1e-5, gradient clipping; validation every 10 epochs,
# one checkpoint at the end. AdamW rather than the reference's SGD: from scratch in 420
# iterations, SGD (lr 0.02, momentum 0.9) gave WIDER easy AP 0.70-0.99 over three seeds and two
# thread counts (one run still learning at the end), AdamW 0.91-0.99 (README, "Quick start").
max_epochs = 60
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs, eta_min=1e-5,
         convert_to_iter_based=True),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.),
    clip_grad=dict(max_norm=35, norm_type=2))
auto_scale_lr = dict(enable=False, base_batch_size=8)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=4),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs, max_keep_ckpts=1))
log_processor = dict(window_size=4)
randomness = dict(seed=0)

# TTA (tools/test.py --tta): flip x shorter side 240 / 400 / 560 for the small synthetic images.
tta_short_sides = [240, 400, 560]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadFaceAnnotations'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=(s, 100000), keep_ratio=True) for s in tta_short_sides],
            [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
            [
                dict(
                    type='PackFaceInputs',
                    meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
                               'flip', 'flip_direction'))
            ]
        ])
]
