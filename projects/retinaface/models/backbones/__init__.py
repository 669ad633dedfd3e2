from .mobilenet_v1 import MobileNetV1

__all__ = ['MobileNetV1']
