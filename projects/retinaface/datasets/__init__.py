"""WIDER FACE dataset with landmarks and the face data pipeline."""
from .transforms import LoadFaceAnnotations, PackFaceInputs, RandomSquareCrop
from .wider_face import WIDERFaceDataset

__all__ = ['WIDERFaceDataset', 'LoadFaceAnnotations', 'RandomSquareCrop', 'PackFaceInputs']
