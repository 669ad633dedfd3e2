import pytest
import torch
from mmdet.models.task_modules.prior_generators import AnchorGenerator
from mmdet.registry import TASK_UTILS

CFG = dict(strides=[8, 16, 32], ratios=[1.0], scales=[1, 2], base_sizes=[16, 64, 256],
           centers=[(4, 4), (8, 8), (16, 16)])


def test_same_anchors_as_mmdet_and_reused_per_size():
    cached = TASK_UTILS.build(dict(type='CachedAnchorGenerator', cache_size=2, **CFG))
    plain = AnchorGenerator(**CFG)
    sizes = [(80, 60), (40, 30), (20, 15)]
    first = cached.grid_priors(sizes, device='cpu')
    for a, b in zip(first, plain.grid_priors(sizes, device='cpu')):
        assert torch.equal(a, b)
    # the same size returns the very same tensors (no rebuild) ...
    assert cached.grid_priors(sizes, device='cpu') is first
    # ... another size, another dtype are new entries with their own values
    other = cached.grid_priors([(10, 10), (5, 5), (3, 3)], device='cpu')
    assert other[0].shape == (10 * 10 * 2, 4)
    half = cached.grid_priors(sizes, dtype=torch.float64, device='cpu')
    assert half[0].dtype == torch.float64 and half is not first
    # cache_size=2: the least recently used entry (the first float32 one) was dropped
    assert len(cached._cache) == 2
    assert cached.grid_priors(sizes, device='cpu') is not first


def test_rejects_bad_cache_size():
    with pytest.raises(ValueError, match='cache_size'):
        TASK_UTILS.build(dict(type='CachedAnchorGenerator', cache_size=0, **CFG))
