# Synthetic WIDER-format data for smoke tests and end-to-end runs on any machine:
#   python tools/dataset_converters/make_synthetic_wider.py data/synthetic_wider
# writes data/synthetic_wider/ (under the repository root) in exactly the layout of
# wider_face.py; its val/label.txt also carries landmarks, so the landmark NME is computed.
_base_ = './wider_face.py'

data_root = '{{ fileDirname }}/../../../data/synthetic_wider/'

train_dataloader = dict(
    batch_size=4,
    dataset=dict(data_root=data_root, ann_file='train/label.txt'))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        ann_file='val/label.txt',
        data_prefix=dict(img='WIDER_val/images/')))
test_dataloader = val_dataloader

val_evaluator = [
    dict(type='WIDERFaceMetric', gt_dir=data_root + 'eval_ground_truth/'),
    dict(type='LandmarkNMEMetric', iou_thr=0.5),
]
test_evaluator = val_evaluator
