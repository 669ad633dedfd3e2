from .face_tta import FaceTTAModel, box_vote, flip_keypoints

__all__ = ['FaceTTAModel', 'box_vote', 'flip_keypoints']
