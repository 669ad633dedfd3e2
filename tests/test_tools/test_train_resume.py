"""tools/train.py and tools/test.py as a user runs them: subprocesses started in another cwd.

Train a toy config for one epoch (2 iterations), resume it (explicit path and auto) with every
``torch.load`` forced to weights-only, and test the checkpoint with ``--out``.
"""
import json
import os
import os.path as osp
import pickle
import subprocess

import pytest
import torch

from tests.helpers import PYTHON, REPO_ROOT
from tests.test_tools.toy_modules import ToyFaceDataset, ToyFaceModel, write_toy_config

TRAIN = osp.join(REPO_ROOT, 'tools', 'train.py')
TEST = osp.join(REPO_ROOT, 'tools', 'test.py')


def run_tool(args, cwd):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    # every torch.load in the tools must work weights-only
    env['TORCH_FORCE_WEIGHTS_ONLY_LOAD'] = '1'
    proc = subprocess.run([PYTHON, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def assert_same(a, b, where='state'):
    """Recursively compare nested checkpoint structures (tensors exactly)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), (where, set(a) ^ set(b))
        for k in a:
            assert_same(a[k], b[k], f'{where}.{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f'{where}[{i}]')
    else:
        assert a == b, (where, a, b)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """One epoch of 2 iterations with the default work_dir, run from a temporary cwd."""
    cwd = tmp_path_factory.mktemp('run')
    cfg = write_toy_config(tmp_path_factory.mktemp('cfgs') / 'toy_face.py')
    log = run_tool([TRAIN, cfg], cwd)
    work_dir = cwd / 'work_dirs' / 'toy_face'  # mmdet's default ./work_dirs/<config name>
    return cwd, cfg, work_dir, log


def test_train_saves_checkpoint(trained):
    cwd, _, work_dir, log = trained
    ckpt = load(work_dir / 'epoch_1.pth')
    assert ckpt['meta']['iter'] == 2 and ckpt['meta']['epoch'] == 1
    assert (work_dir / 'last_checkpoint').read_text().strip() == str(work_dir / 'epoch_1.pth')
    assert 'Epoch(train) [1][2/2]' in log
    probe = json.loads((work_dir / 'probe_after_train_rank0.json').read_text())
    assert probe == dict(probe, rank=0, world_size=1, iter=2, epoch=1)
    # the warm-up moved the lr away from its initial value: scheduler state is worth checking
    lr = ckpt['optimizer']['param_groups'][0]['lr']
    assert 0.0011 < lr < 0.0099


def test_resume_restores_state_and_continues(trained, tmp_path):
    cwd, cfg, work_dir, _ = trained
    saved = load(work_dir / 'epoch_1.pth')
    new_work_dir = tmp_path / 'resumed'
    log = run_tool([TRAIN, cfg, '--work-dir', new_work_dir, '--resume', work_dir / 'epoch_1.pth',
                    '--cfg-options', 'train_cfg.max_epochs=2'], tmp_path)
    assert 'resumed epoch: 1, iter: 2' in log
    assert 'Loads checkpoint by local backend' in log

    probe = load(new_work_dir / 'probe_before_train_rank0.pth')  # state right after resuming
    assert probe['iter'] == 2 and probe['epoch'] == 1
    assert_same(probe['state_dict'], saved['state_dict'], 'state_dict')
    assert_same(probe['optimizer'], saved['optimizer'], 'optimizer')
    assert len(probe['optimizer']['state']) == 4  # SGD momentum buffers restored
    assert probe['lr'] == [g['lr'] for g in saved['optimizer']['param_groups']]
    assert_same(probe['param_schedulers'], saved['param_schedulers'], 'param_schedulers')
    assert probe['param_schedulers'][0]['last_step'] == 2

    # ...and training went on from there: iterations 3-4, epoch 2
    after = json.loads((new_work_dir / 'probe_after_train_rank0.json').read_text())
    assert after['iter'] == 4 and after['epoch'] == 2
    ckpt2 = load(new_work_dir / 'epoch_2.pth')
    assert ckpt2['meta']['iter'] == 4 and ckpt2['meta']['epoch'] == 2
    assert not torch.equal(ckpt2['state_dict']['bbox_fc.weight'],
                           saved['state_dict']['bbox_fc.weight'])


def test_auto_resume_from_work_dir(trained, tmp_path):
    _, cfg, work_dir, _ = trained
    work = tmp_path / 'auto'
    work.mkdir()
    (work / 'epoch_1.pth').write_bytes((work_dir / 'epoch_1.pth').read_bytes())
    (work / 'last_checkpoint').write_text(str(work / 'epoch_1.pth'))
    log = run_tool([TRAIN, cfg, '--work-dir', work, '--resume',
                    '--cfg-options', 'train_cfg.max_epochs=2'], tmp_path)
    assert f'Auto resumed from the latest checkpoint {work / "epoch_1.pth"}' in log
    assert load(work / 'probe_before_train_rank0.pth')['iter'] == 2
    assert load(work / 'epoch_2.pth')['meta']['iter'] == 4


def test_test_tool_dumps_predictions(trained, tmp_path):
    _, cfg, work_dir, _ = trained
    out = tmp_path / 'preds.pkl'
    log = run_tool([TEST, cfg, work_dir / 'epoch_1.pth', '--out', out], tmp_path)
    assert 'Epoch(test) [2/2]' in log and 'toy/mae:' in log
    # default work_dir of the test tool is relative to the cwd as well
    assert (tmp_path / 'work_dirs' / 'toy_face').is_dir()

    with open(out, 'rb') as f:
        results = pickle.load(f)
    model = ToyFaceModel()
    model.load_state_dict(load(work_dir / 'epoch_1.pth')['state_dict'])
    dataset = ToyFaceDataset(num_samples=4, seed=1)
    assert sorted(r['img_id'] for r in results) == [f'toy/{i}' for i in range(4)]
    for r in results:
        assert 'gt_instances' not in r
        item = dataset[int(r['img_id'].split('/')[1])]
        pred = model(item['inputs'][None], [item['data_samples']], mode='predict')[0]
        assert set(r['pred_instances']) >= {'bboxes', 'scores', 'labels', 'keypoints'}
        assert r['pred_instances']['keypoints'].shape == (1, 5, 2)
        torch.testing.assert_close(r['pred_instances']['keypoints'], pred.pred_instances.keypoints)
        torch.testing.assert_close(r['pred_instances']['bboxes'], pred.pred_instances.bboxes)


def test_train_tool_reports_nan_loss(trained, tmp_path):
    _, cfg, _, _ = trained
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run(
        [PYTHON, TRAIN, cfg, '--work-dir', str(tmp_path / 'nan'), '--cfg-options',
         'model.nan_at_iter=2'], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode != 0
    assert 'NonFiniteLossError: Non-finite loss at iteration 2 (epoch 1, batch 2/2)' in \
        proc.stderr
    assert not (tmp_path / 'nan' / 'epoch_1.pth').exists()
