from .landmark_aware_assigner import LandmarkAwareAssigner

__all__ = ['LandmarkAwareAssigner']
