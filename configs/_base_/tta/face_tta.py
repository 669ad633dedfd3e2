# Test-time augmentation of the RetinaFace paper: horizontal flip x shorter side
# 500 / 800 / 1100 / 1400 / 1700, merged by box voting at IoU 0.4 (landmarks kept).
# Use with mmdet's tools/test.py --tta (it wraps cfg.model in tta_model and swaps the test
# pipeline for tta_pipeline). The largest scales need a lot of memory on big images.
tta_model = dict(
    type='FaceTTAModel',
    tta_cfg=dict(merge='vote', iou_thr=0.4, max_per_img=750))

tta_short_sides = [500, 800, 1100, 1400, 1700]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    # before TestTimeAug: every view's gt follows its own resize / flip (for the NME metric)
    dict(type='LoadFaceAnnotations'),
    dict(
        type='TestTimeAug',
        transforms=[
            # scale=(s, 100000) with keep_ratio: the shorter side becomes s
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
