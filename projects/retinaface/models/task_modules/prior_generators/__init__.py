from .cached_anchor_generator import CachedAnchorGenerator

__all__ = ['CachedAnchorGenerator']
