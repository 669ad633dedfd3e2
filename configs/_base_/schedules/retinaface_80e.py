# The RetinaFace paper's recipe (Deng et al., CVPR 2020, Sec. 4.2): SGD (momentum 0.9, weight
# decay 5e-4) with 32 images per step in total; the learning rate warms up from 1e-3 to 1e-2
# over the first 5 epochs, is divided by 10 at epochs 55 and 68, and training stops at 80.
max_epochs = 80

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    # linear warm-up 1e-3 -> 1e-2, stepped every iteration
    dict(
        type='LinearLR',
        start_factor=0.1,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='MultiStepLR',
        by_epoch=True,
        begin=0,
        end=max_epochs,
        milestones=[55, 68],
        gamma=0.1),
]

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4),
    # optional gradient clipping, e.g. clip_grad=dict(max_norm=35, norm_type=2)
    clip_grad=None)

# The recipe's total batch is 32 (e.g. 8 GPUs x 4 or 4 GPUs x 8). With a different total,
# `tools/train.py --auto-scale-lr` scales lr linearly by (num_gpus x batch_size) / 32.
auto_scale_lr = dict(enable=False, base_batch_size=32)
