"""RetinaFace for MMDetection 3.x.

Importing this package registers every module in mmdet's registries (scope ``mmdet``) and makes
mmengine checkpoints load safely with ``torch.load(weights_only=True)``. Configs reach it with::

    custom_imports = dict(imports=['projects.retinaface'], allow_failed_imports=False)
"""
from . import utils  # noqa: F401  (first: safe checkpoint loading)
from . import engine  # noqa: F401
from . import structures  # noqa: F401
from . import models  # noqa: F401
from . import datasets  # noqa: F401
from . import evaluation  # noqa: F401
from . import visualization  # noqa: F401
from . import apis  # noqa: F401

__version__ = '0.1.0'
