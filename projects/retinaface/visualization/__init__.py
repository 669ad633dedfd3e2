from .face_visualizer import LANDMARK_COLORS, FaceLocalVisualizer, draw_faces

__all__ = ['FaceLocalVisualizer', 'LANDMARK_COLORS', 'draw_faces']
