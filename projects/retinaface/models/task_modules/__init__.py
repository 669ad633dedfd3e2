"""Target machinery of RetinaFace: landmark coder, landmark-aware assigner, OHEM miner."""
from .assigners import LandmarkAwareAssigner
from .coders import LandmarkCoder
from .samplers import OHEMNegativeMiner

__all__ = ['LandmarkCoder', 'LandmarkAwareAssigner', 'OHEMNegativeMiner']
