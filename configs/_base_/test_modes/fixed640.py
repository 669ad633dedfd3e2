# Used by configs/test_modes/*: they take test_mode_pipeline and test_mode_cfg from here.
# Fixed 640x640 input (aspect ratio not kept), as the published ONNX export; score threshold
# 0.02, NMS IoU 0.4, every detection kept; predictions are rescaled to the original image.
test_mode_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadFaceAnnotations'),
    dict(type='Resize', scale=(640, 640), keep_ratio=False),
    dict(type='PackFaceInputs'),
]
test_mode_cfg = dict(
    nms_pre=10000, score_thr=0.02, nms=dict(type='nms', iou_threshold=0.4),
    max_per_img=10000)
