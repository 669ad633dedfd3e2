from .landmark_coder import LandmarkCoder

__all__ = ['LandmarkCoder']
