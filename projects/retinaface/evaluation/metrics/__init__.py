from .face_ap_metric import FaceAPMetric
from .landmark_metric import LandmarkNMEMetric
from .wider_face_metric import WIDERFaceMetric

__all__ = ['WIDERFaceMetric', 'LandmarkNMEMetric', 'FaceAPMetric']
