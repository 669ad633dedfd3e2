from . import backbones, dense_heads, detectors, necks, task_modules, test_time_augs  # noqa: F401
