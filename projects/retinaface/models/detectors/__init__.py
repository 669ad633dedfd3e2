from .retinaface import RetinaFace

__all__ = ['RetinaFace']
