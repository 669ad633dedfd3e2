# Runtime settings shared by every RetinaFace config (mmdet 3.x conventions).
default_scope = 'mmdet'
custom_imports = dict(imports=['projects.retinaface'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # drawing is off unless tools/test.py gets --show / --show-dir; mmdet's
    # DetVisualizationHook that skips files which could not be read (projects/retinaface/engine)
    visualization=dict(type='FaceVisualizationHook'))

# Stop training with a clear error as soon as any loss term is NaN/inf.
custom_hooks = [dict(type='FiniteLossHook')]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # 'nccl' on GPUs; tools/train.py and tools/test.py switch to 'gloo' when CUDA is absent.
    dist_cfg=dict(backend='nccl'))

vis_backends = [
    dict(type='LocalVisBackend'),
    # TensorBoard (optional requirement): uncomment, or add it in a derived config.
    # dict(type='TensorboardVisBackend'),
]
# Draws boxes, scores and the five landmarks (projects/retinaface/visualization).
visualizer = dict(type='FaceLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False
