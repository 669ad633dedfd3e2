# The Pytorch_Retinaface (biubug6) recipe for ResNet-50 (its data/config.py cfg_re50 and
# train.py): SGD lr 1e-3 (momentum 0.9, weight decay 5e-4), batch 24 in total, no warm-up,
# lr x0.1 at epochs 70 and 90, 100 epochs.
max_epochs = 100

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(
        type='MultiStepLR',
        by_epoch=True,
        begin=0,
        end=max_epochs,
        milestones=[70, 90],
        gamma=0.1),
]

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=5e-4),
    clip_grad=None)

auto_scale_lr = dict(enable=False, base_batch_size=24)
