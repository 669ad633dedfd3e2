"""The RetinaFace detector."""
from mmdet.models.detectors import SingleStageDetector
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig


@MODELS.register_module()
class RetinaFace(SingleStageDetector):
    """RetinaFace (Deng et al., CVPR 2020): backbone, neck(s) and a multi-task dense head.

    A plain :class:`SingleStageDetector`; the head (:class:`RetinaFaceHead` or
    :class:`CascadeRetinaFaceHead`) adds ``keypoints`` (and ``vertices``) to
    ``data_sample.pred_instances``. ``neck`` may be a list, e.g. ``[FPN, ContextModule]``.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: OptConfigType = None,
                 bbox_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(
            backbone=backbone,
            neck=neck,
            bbox_head=bbox_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
