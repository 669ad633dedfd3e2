from .face_visualizer import LANDMARK_COLORS, FaceLocalVisualizer

__all__ = ['FaceLocalVisualizer', 'LANDMARK_COLORS']
