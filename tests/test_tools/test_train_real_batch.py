"""Real-data training sanity: SGD on one fixed batch of two real WIDER FACE train images.

The model is the light RetinaFace-MobileNet-0.25 of configs/retinaface_mnet025_wider_shared.py
(random init, no checkpoint download). The batch: two shared train images with large,
landmark-annotated faces, resized to 256x256 (deterministic, no random augmentation).
Checks that every loss term (cls, box, landmark) sends a gradient into its own head branch and
into the backbone, and that a few SGD steps reduce the total loss on that same batch.
"""
from copy import deepcopy

import numpy as np
import pytest
import torch

from tests.helpers import REPO_ROOT, requires_shared, shared_path

pytestmark = requires_shared('data', 'widerface', 'retinaface_gt', 'train', 'label.txt')

SIZE = 256
LOSS_BRANCH = {'loss_cls': 'cls_heads', 'loss_bbox': 'reg_heads', 'loss_kpt': 'kpt_heads'}


def _pick_images(dataset, n=2, min_face=24):
    """The first ``n`` images whose faces all have landmarks, with a large enough face once
    the image is resized to SIZE x SIZE (so anchors match them)."""
    picked = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        inst = [x for x in info['instances'] if not x['ignore_flag']]
        if not inst or not all(all(x['keypoints_valid']) for x in inst):
            continue
        scale = SIZE / max(info['height'], info['width'])
        sides = [min(x['bbox'][2] - x['bbox'][0], x['bbox'][3] - x['bbox'][1]) * scale
                 for x in inst]
        if max(sides) >= min_face:
            picked.append(i)
        if len(picked) == n:
            return picked
    pytest.fail(f'fewer than {n} suitable shared train images')


@pytest.fixture(scope='module')
def setup():
    from mmdet.registry import DATASETS, MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate

    import projects.retinaface  # noqa: F401

    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / 'retinaface_mnet025_wider_shared.py'))
    ds_cfg = deepcopy(cfg.train_dataloader.dataset)
    ds_cfg.data_root = str(shared_path('data', 'widerface')) + '/'
    ds_cfg.pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadFaceAnnotations'),
        dict(type='Resize', scale=(SIZE, SIZE), keep_ratio=False),
        dict(type='PackFaceInputs'),
    ]
    dataset = DATASETS.build(ds_cfg)
    items = [dataset[i] for i in _pick_images(dataset)]
    batch = pseudo_collate(items)
    model_cfg = deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.train()
    # one intra-op thread: much faster than two on a CPU shared with other jobs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield model, batch
    torch.set_num_threads(threads)


def _losses(model, batch):
    data = model.data_preprocessor(batch, training=True)
    raw = model(**data, mode='loss')
    out = {}
    for k, v in raw.items():
        if 'loss' in k:
            out[k] = sum(v) if isinstance(v, (list, tuple)) else v
    return out


def test_batch_has_faces_with_landmarks(setup):
    _, batch = setup
    for sample, img in zip(batch['data_samples'], batch['inputs']):
        assert tuple(img.shape[-2:]) == (SIZE, SIZE)
        gt = sample.gt_instances
        assert len(gt) > 0
        assert gt.keypoints.shape == (len(gt), 5, 2)
        assert bool((gt.keypoints_valid > 0).all())


def test_every_loss_term_reaches_head_and_backbone(setup):
    model, batch = setup
    losses = _losses(model, batch)
    assert set(LOSS_BRANCH) <= set(losses), sorted(losses)
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    backbone_params = [p for p in model.backbone.parameters() if p.requires_grad]
    for name, branch in LOSS_BRANCH.items():
        term = losses[name]
        assert torch.isfinite(term) and term.item() > 0, (name, term)
        model.zero_grad(set_to_none=True)
        term.backward(retain_graph=True)
        own = [p.grad for p in getattr(model.bbox_head, branch).parameters()]
        assert all(g is not None for g in own) and sum(g.abs().sum() for g in own) > 0, name
        # the other task branches get no gradient from this term
        for other in set(LOSS_BRANCH.values()) - {branch}:
            grads = [p.grad for p in getattr(model.bbox_head, other).parameters()]
            assert all(g is None or not g.abs().sum() for g in grads), (name, other)
        bb = [p.grad for p in backbone_params if p.grad is not None]
        assert bb and sum(g.abs().sum() for g in bb) > 0, f'{name}: no gradient in backbone'
        # down to the very first convolution of the network
        assert first_conv.weight.grad is not None, name
        assert first_conv.weight.grad.abs().sum() > 0, name
    model.zero_grad(set_to_none=True)


def test_sgd_steps_reduce_loss_on_the_batch(setup):
    model, batch = setup
    model = deepcopy(model)
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    history = []
    for _ in range(10):
        losses = _losses(model, batch)
        total = sum(losses.values())
        assert torch.isfinite(total)
        history.append({k: float(v) for k, v in losses.items()} | {'total': float(total)})
        opt.zero_grad()
        total.backward()
        opt.step()
    with torch.no_grad():
        final = _losses(model, batch)
    final_total = float(sum(final.values()))
    first = history[0]['total']
    assert final_total < 0.8 * first, [h['total'] for h in history] + [final_total]
    # the landmark and box terms are learnt too, not only classification
    assert float(final['loss_kpt']) < history[0]['loss_kpt']
    assert float(final['loss_bbox']) < history[0]['loss_bbox']
    assert np.isfinite(final_total)
