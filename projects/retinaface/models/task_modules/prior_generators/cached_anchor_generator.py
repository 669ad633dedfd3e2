"""Anchors cached per input size."""
from collections import OrderedDict
from typing import List, Tuple

import torch
from mmdet.models.task_modules.prior_generators import AnchorGenerator
from mmdet.registry import TASK_UTILS
from torch import Tensor


@TASK_UTILS.register_module()
class CachedAnchorGenerator(AnchorGenerator):
    """mmdet's :class:`AnchorGenerator` that remembers the anchors of the last few input sizes.

    Inference on a stream of same-sized images (a video, a fixed 640x640 test mode, a server)
    would otherwise rebuild every level's anchors on every call. The anchors depend only on the
    feature-map sizes, dtype and device, which form the cache key; at most ``cache_size`` entries
    are kept (least recently used dropped). The returned tensors are shared between calls:
    callers must not modify them in place (mmdet's heads do not).

    Args:
        cache_size (int): number of (sizes, dtype, device) entries kept. Defaults to 8.
        **kwargs: the arguments of :class:`AnchorGenerator`.
    """

    def __init__(self, *args, cache_size: int = 8, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if cache_size < 1:
            raise ValueError(f'cache_size must be >= 1, got {cache_size}')
        self.cache_size = cache_size
        self._cache: 'OrderedDict[tuple, List[Tensor]]' = OrderedDict()

    def grid_priors(self,
                    featmap_sizes: List[Tuple],
                    dtype: torch.dtype = torch.float32,
                    device='cuda') -> List[Tensor]:
        key = (tuple((int(h), int(w)) for h, w in featmap_sizes), dtype, str(device))
        anchors = self._cache.get(key)
        if anchors is None:
            anchors = super().grid_priors(featmap_sizes, dtype=dtype, device=device)
            self._cache[key] = anchors
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return anchors
