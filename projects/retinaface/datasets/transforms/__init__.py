"""Face data transforms (registered in mmdet's ``TRANSFORMS``)."""
from .formatting import PackFaceInputs
from .loading import LoadFaceAnnotations
from .random_square_crop import RandomSquareCrop

__all__ = ['LoadFaceAnnotations', 'RandomSquareCrop', 'PackFaceInputs']
