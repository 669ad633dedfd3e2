"""A tiny registered model, dataset, metric and probe hook for testing the runner tools.

They stand in for RetinaFace so the tool tests run on CPU in seconds. Configs written by the tests
reach them with ``custom_imports = dict(imports=['projects.retinaface',
'tests.test_tools.toy_modules'])``; ``tools/train.py`` puts the repository root on ``sys.path`` so
the import works from any current directory.
"""
import json
import os.path as osp

import numpy as np
import torch
import torch.nn.functional as F
from mmdet.registry import DATASETS, HOOKS, METRICS, MODELS
from mmdet.structures import DetDataSample
from mmengine.dist import get_dist_info
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel, is_model_wrapper
from mmengine.structures import InstanceData
from torch import nn
from torch.utils.data import Dataset

NUM_FEATS = 4


@MODELS.register_module(force=True)
class ToyFaceModel(BaseModel):
    """A linear 'detector' predicting one box (4) and five landmarks (5x2) per input vector.

    Args:
        nan_at_iter (int, optional): 1-based count of training forward passes (in this process)
            at which ``loss_kpt`` becomes NaN. Defaults to None (never).
        data_preprocessor (dict, optional): Defaults to ``BaseDataPreprocessor``.
        init_cfg (dict, optional): Defaults to None.
    """

    def __init__(self, nan_at_iter=None, data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.bbox_fc = nn.Linear(NUM_FEATS, 4)
        self.kpt_fc = nn.Linear(NUM_FEATS, 10)
        self.nan_at_iter = nan_at_iter
        self._train_forwards = 0

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(list(inputs)) if isinstance(inputs, (list, tuple)) else inputs
        boxes, kpts = self.bbox_fc(x), self.kpt_fc(x).view(-1, 5, 2)
        if mode == 'tensor':
            return boxes, kpts
        if mode == 'loss':
            self._train_forwards += 1
            gt_boxes = torch.cat([ds.gt_instances.bboxes for ds in data_samples])
            gt_kpts = torch.cat([ds.gt_instances.keypoints for ds in data_samples])
            loss_bbox = F.mse_loss(boxes, gt_boxes)
            loss_kpt = F.mse_loss(kpts, gt_kpts)
            if self.nan_at_iter is not None and self._train_forwards == self.nan_at_iter:
                loss_kpt = loss_kpt * float('nan')
            return dict(loss_bbox=loss_bbox, loss_kpt=loss_kpt)
        if mode == 'predict':
            for i, ds in enumerate(data_samples):
                pred = InstanceData()
                pred.bboxes = boxes[i:i + 1].detach()
                pred.scores = torch.sigmoid(boxes[i:i + 1, 0]).detach()
                pred.labels = torch.zeros(1, dtype=torch.long)
                pred.keypoints = kpts[i:i + 1].detach()
                ds.pred_instances = pred
            return list(data_samples)
        raise ValueError(f'unknown mode {mode!r}')


@DATASETS.register_module(force=True)
class ToyFaceDataset(Dataset):
    """Deterministic in-memory samples: a feature vector plus one face box and 5 landmarks.

    Args:
        num_samples (int): Number of samples. Defaults to 8.
        seed (int): Generator seed. Defaults to 0.
        pipeline (list, optional): Ignored (kept for config compatibility).
        test_mode (bool): Ignored. Defaults to False.
    """

    METAINFO = dict(classes=('face', ), palette=[(0, 255, 0)])

    def __init__(self, num_samples=8, seed=0, pipeline=None, test_mode=False):
        gen = torch.Generator().manual_seed(seed)
        self.feats = torch.randn(num_samples, NUM_FEATS, generator=gen)
        self.boxes = torch.rand(num_samples, 1, 4, generator=gen) * 10
        self.kpts = torch.rand(num_samples, 1, 5, 2, generator=gen) * 10

    @property
    def metainfo(self):
        return dict(classes=self.METAINFO['classes'], palette=list(self.METAINFO['palette']))

    def __len__(self):
        return len(self.feats)

    def __getitem__(self, idx):
        ds = DetDataSample(metainfo=dict(
            img_id=f'toy/{idx}', img_path=f'toy/{idx}.jpg', ori_shape=(16, 16),
            img_shape=(16, 16), scale_factor=(1.0, 1.0)))
        gt = InstanceData()
        gt.bboxes = self.boxes[idx]
        gt.labels = torch.zeros(1, dtype=torch.long)
        gt.keypoints = self.kpts[idx]
        ds.gt_instances = gt
        return dict(inputs=self.feats[idx], data_samples=ds)


@METRICS.register_module(force=True)
class ToyBoxMetric(BaseMetric):
    """Mean absolute box error; returns a numpy float like many real metrics do."""

    default_prefix = 'toy'

    def process(self, data_batch, data_samples):
        for ds in data_samples:
            err = (ds['pred_instances']['bboxes'] - ds['gt_instances']['bboxes']).abs().mean()
            self.results.append(float(err))

    def compute_metrics(self, results):
        return dict(mae=np.float64(np.mean(results)))


@HOOKS.register_module(force=True)
class ToyProbeHook(Hook):
    """Dumps the runner state right before training starts (i.e. just after ``--resume``) and
    writes a per-rank summary when training ends, into ``runner.work_dir``."""

    priority = 'LOWEST'

    def before_train(self, runner):
        rank, _ = get_dist_info()
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        schedulers = runner.param_schedulers
        if isinstance(schedulers, dict):
            schedulers = {k: [s.state_dict() for s in v] for k, v in schedulers.items()}
        else:
            schedulers = [s.state_dict() for s in schedulers or []]
        state = dict(
            iter=runner.iter,
            epoch=runner.epoch,
            optimizer=runner.optim_wrapper.state_dict(),
            param_schedulers=schedulers,
            state_dict=model.state_dict(),
            lr=[g['lr'] for g in runner.optim_wrapper.optimizer.param_groups])
        torch.save(state, osp.join(runner.work_dir, f'probe_before_train_rank{rank}.pth'))

    def after_train(self, runner):
        rank, world_size = get_dist_info()
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        param_sum = float(sum(p.detach().double().sum() for p in model.parameters()))
        with open(osp.join(runner.work_dir, f'probe_after_train_rank{rank}.json'), 'w') as f:
            json.dump(dict(rank=rank, world_size=world_size, iter=runner.iter,
                           epoch=runner.epoch, param_sum=param_sum), f)


def write_toy_config(path, work_dir=None, extra=''):
    """Write a tiny training/testing config inheriting the repository's default runtime.

    Args:
        path (str | Path): Where to write the ``.py`` config.
        work_dir (str, optional): ``work_dir`` in the config (None: tools choose).
        extra (str): Python source appended to the config (overrides).
    """
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    runtime = osp.join(repo, 'configs', '_base_', 'default_runtime.py')
    text = f'''_base_ = [{runtime!r}]
custom_imports = dict(
    imports=['projects.retinaface', 'tests.test_tools.toy_modules'], allow_failed_imports=False)
model = dict(type='ToyFaceModel')
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='ToyFaceDataset', num_samples=4))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ToyFaceDataset', num_samples=4, seed=1, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='ToyBoxMetric')
test_evaluator = val_evaluator
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=4, milestones=[2, 3], gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=2)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', interval=1, save_best='toy/mae', rule='less'))
custom_hooks = [dict(type='FiniteLossHook'), dict(type='ToyProbeHook')]
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
'''
    if work_dir is not None:
        text += f'work_dir = {str(work_dir)!r}\n'
    text += extra
    with open(path, 'w') as f:
        f.write(text)
    return str(path)
