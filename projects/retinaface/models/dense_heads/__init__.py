from .cascade_retinaface_head import CascadeRetinaFaceHead
from .retinaface_head import RetinaFaceHead

__all__ = ['RetinaFaceHead', 'CascadeRetinaFaceHead']
