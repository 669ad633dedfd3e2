"""Data structures: :class:`KeypointBoxes` (box type ``kpt_hbox``)."""
from .keypoint_boxes import FACE_FLIP_INDICES, KeypointBoxes

__all__ = ['KeypointBoxes', 'FACE_FLIP_INDICES']
