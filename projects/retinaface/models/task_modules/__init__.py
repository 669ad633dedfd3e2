"""Target machinery of RetinaFace: landmark coder, landmark-aware assigner, OHEM miner, and
anchors cached per input size."""
from .assigners import LandmarkAwareAssigner
from .coders import LandmarkCoder
from .prior_generators import CachedAnchorGenerator
from .samplers import OHEMNegativeMiner

__all__ = [
    'LandmarkCoder', 'LandmarkAwareAssigner', 'OHEMNegativeMiner', 'CachedAnchorGenerator'
]
