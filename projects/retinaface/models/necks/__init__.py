from .context_module import ContextBlock, ContextModule
from .retinaface_fpn import RetinaFaceFPN

__all__ = ['ContextBlock', 'ContextModule', 'RetinaFaceFPN']
