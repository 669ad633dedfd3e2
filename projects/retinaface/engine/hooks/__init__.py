from .face_visualization_hook import FaceVisualizationHook
from .finite_loss_hook import FiniteLossHook, NonFiniteLossError

__all__ = ['FaceVisualizationHook', 'FiniteLossHook', 'NonFiniteLossError']
