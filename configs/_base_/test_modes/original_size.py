# Used by configs/test_modes/*: they take test_mode_pipeline and test_mode_cfg from here.
# WIDER FACE test protocol: the original image size (no resize), score threshold 0.02, NMS IoU
# 0.4, and max_per_img large enough to keep every detection.
test_mode_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadFaceAnnotations'),
    dict(type='PackFaceInputs'),
]
test_mode_cfg = dict(
    nms_pre=10000, score_thr=0.02, nms=dict(type='nms', iou_threshold=0.4),
    max_per_img=10000)
