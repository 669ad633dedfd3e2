# WIDER FACE with the five RetinaFace landmarks (full dataset, downloaded by the user).
#
# Download into data/widerface/ under the repository root (or pass another data_root, see below):
#   - WIDER_train.zip, WIDER_val.zip (images) and wider_face_split.zip (official ground truth)
#     from the WIDER FACE page (http://shuoyang1213.me/WIDERFACE/);
#   - the RetinaFace annotations with landmarks, retinaface_gt_v1.1.zip (train/label.txt,
#     val/label.txt, test/label.txt; links in the RetinaFace / insightface README);
#   - the evaluation ground truth eval_ground_truth/ (wider_face_val.mat,
#     wider_{easy,medium,hard}_val.mat) from eval_tools.zip of the WIDER FACE page.
# Layout:
#   data/widerface/WIDER_train/images/<event>/*.jpg    data/widerface/WIDER_val/images/...
#   data/widerface/train/label.txt                     data/widerface/val/label.txt
#   data/widerface/wider_face_split/wider_face_val_bbx_gt.txt (and the .mat files)
#   data/widerface/eval_ground_truth/wider_{face,easy,medium,hard}_val.mat
# Another location: WIDER_DATA_ROOT=/path/ (environment variable), or
#   --cfg-options train_dataloader.dataset.data_root=/path/ \
#   val_dataloader.dataset.data_root=/path/ test_dataloader.dataset.data_root=/path/ \
#   val_evaluator.gt_dir=/path/eval_ground_truth/ test_evaluator.gt_dir=/path/eval_ground_truth/
# custom_imports (projects.retinaface) comes from default_runtime.py or the top-level config.

dataset_type = 'WIDERFaceDataset'
# WIDER_DATA_ROOT=/path/to/widerface/ moves every dataloader and evaluator path at once.
data_root = '{{$WIDER_DATA_ROOT:{{ fileDirname }}/../../../data/widerface/}}'
data_root = data_root if data_root.endswith('/') else data_root + '/'
backend_args = None

# The paper's augmentation: random square crop of [0.3, 1] of the short edge (faces whose
# centre is inside are kept), photometric distortion, resize to 640x640, horizontal flip.
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadFaceAnnotations'),
    dict(type='RandomSquareCrop', scale_range=(0.3, 1.0)),
    dict(type='PhotoMetricDistortion'),
    dict(type='Resize', scale=(640, 640), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackFaceInputs'),
]
# Test at the original size (the WIDER FACE protocol of the reference). Annotations are loaded
# before any resize so that gt_instances are in network-input pixels (DEVELOPERS.md). For a
# resized test, insert e.g. dict(type='Resize', scale=(1600, 2150), keep_ratio=True) after
# LoadFaceAnnotations. PackFaceInputs records scale_factor (1.0, 1.0) when nothing resizes.
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadFaceAnnotations'),
    # mmdet's default meta keys: img_id, img_path, ori_shape, img_shape, scale_factor, flip,
    # flip_direction
    dict(type='PackFaceInputs'),
]

train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='train/label.txt',
        data_prefix=dict(img='WIDER_train/images/'),
        filter_cfg=dict(filter_empty_gt=True),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        # official val boxes with the invalid flags (-> ignored faces); val/label.txt (same
        # boxes, no flags) also works
        ann_file='wider_face_split/wider_face_val_bbx_gt.txt',
        data_prefix=dict(img='WIDER_val/images/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

# WIDER val has no landmark annotations, so only the official AP is computed here.
val_evaluator = dict(type='WIDERFaceMetric', gt_dir=data_root + 'eval_ground_truth/')
test_evaluator = val_evaluator
