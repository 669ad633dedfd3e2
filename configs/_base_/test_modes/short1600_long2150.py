# Used by configs/test_modes/*: they take test_mode_pipeline and test_mode_cfg from here.
# WIDER FACE test protocol: shorter side 1600 with the longer side capped at 2150 (aspect ratio
# kept), score threshold 0.02, NMS IoU 0.4, every detection kept. Annotations are loaded before
# the resize so gt_instances follow it (landmark NME); predictions are rescaled to the original.
test_mode_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadFaceAnnotations'),
    dict(type='Resize', scale=(2150, 1600), keep_ratio=True),
    dict(type='PackFaceInputs'),
]
test_mode_cfg = dict(
    nms_pre=10000, score_thr=0.02, nms=dict(type='nms', iou_threshold=0.4),
    max_per_img=10000)
