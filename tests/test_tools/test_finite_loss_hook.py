"""FiniteLossHook stops training on NaN/inf losses, naming the iteration and the loss term."""
import uuid
from types import SimpleNamespace

import pytest
import torch
from mmdet.registry import HOOKS
from mmengine.config import Config
from mmengine.runner import Runner

from projects.retinaface.engine.hooks import FiniteLossHook, NonFiniteLossError
from tests.test_tools.toy_modules import write_toy_config


def _runner(tmp_path, **cfg_options):
    cfg = Config.fromfile(write_toy_config(tmp_path / 'toy_cfg.py', work_dir=tmp_path / 'work'))
    cfg.merge_from_dict(cfg_options)
    cfg.experiment_name = f'finite_loss_{uuid.uuid4().hex}'
    return Runner.from_cfg(cfg)


@pytest.mark.parametrize('nan_at_iter', [1, 3])
def test_training_stops_at_the_nan_iteration(nan_at_iter, tmp_path):
    # 4 samples, batch 2: 2 iterations per epoch; iteration 3 is in epoch 2
    runner = _runner(tmp_path, **{'model.nan_at_iter': nan_at_iter, 'train_cfg.max_epochs': 2})
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    msg = str(info.value)
    assert f'Non-finite loss at iteration {nan_at_iter} ' in msg
    assert f'(epoch {(nan_at_iter - 1) // 2 + 1}, batch {(nan_at_iter - 1) % 2 + 1}/2)' in msg
    assert 'loss_kpt=nan' in msg
    assert 'loss_bbox' not in msg  # the finite term is not blamed
    assert runner.iter == nan_at_iter - 1  # stopped inside that iteration
    # the corrupted weights were not checkpointed at the end of that epoch
    assert not (tmp_path / 'work' / f'epoch_{(nan_at_iter - 1) // 2 + 1}.pth').exists()


def test_finite_training_is_untouched(tmp_path):
    runner = _runner(tmp_path)
    runner.train()
    assert runner.iter == 2
    assert any(isinstance(h, FiniteLossHook) for h in runner.hooks)  # from default_runtime


def _fake_runner(iter_=6, epoch=1, num_batches=10):
    return SimpleNamespace(iter=iter_, epoch=epoch, train_dataloader=range(num_batches))


def test_hook_unit_behaviour():
    hook = HOOKS.build(dict(type='FiniteLossHook'))
    runner = _fake_runner()
    finite = dict(loss=torch.tensor(1.0), loss_cls=torch.tensor(0.5), acc=torch.tensor(1.0))
    hook.after_train_iter(runner, batch_idx=6, outputs=finite)
    # non-loss entries are not checked by default
    hook.after_train_iter(runner, 6, outputs=dict(finite, acc=torch.tensor(float('nan'))))
    with pytest.raises(NonFiniteLossError) as info:
        hook.after_train_iter(runner, 6, outputs=dict(
            loss=torch.tensor(float('inf')), loss_box=torch.tensor(float('-inf')),
            loss_cls=torch.tensor(0.5)))
    msg = str(info.value)
    assert 'iteration 7 (epoch 2, batch 7/10)' in msg
    assert msg.index('loss_box=-inf') < msg.index('loss=inf')  # the culprit term first
    assert 'loss_cls' not in msg
    with pytest.raises(NonFiniteLossError, match='loss_x=nan'):  # python floats too
        hook.after_train_iter(runner, 6, outputs=dict(loss_x=float('nan')))


def test_hook_interval_and_keys():
    hook = FiniteLossHook(interval=4, keys=['acc'])
    nan = dict(acc=torch.tensor(float('nan')))
    hook.after_train_iter(_fake_runner(iter_=5), 5, outputs=nan)  # iteration 6: not checked
    with pytest.raises(NonFiniteLossError, match='iteration 8 .*acc=nan'):
        hook.after_train_iter(_fake_runner(iter_=7), 7, outputs=nan)
    with pytest.raises(KeyError, match='not among the training outputs'):
        hook.after_train_iter(_fake_runner(iter_=7), 7, outputs=dict(loss=torch.tensor(1.)))
    with pytest.raises(ValueError, match='positive int'):
        FiniteLossHook(interval=0)
