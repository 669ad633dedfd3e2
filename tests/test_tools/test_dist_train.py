"""tools/dist_train.sh and tools/dist_test.sh: torchrun with 2 CPU processes (gloo)."""
import json
import os
import os.path as osp
import pickle
import socket
import subprocess

import pytest
import torch

from tests.helpers import PYTHON, REPO_ROOT
from tests.test_tools.toy_modules import write_toy_config


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# A free port is found by binding and releasing it, so another process may take it before
# torchrun binds it; such network failures (only those) are retried once with a new port.
_PORT_ERRORS = ('Address already in use', 'EADDRINUSE', 'DistNetworkError', 'Connection refused',
                'RendezvousConnectionError', 'connect() timed out')


def run_script(script, args, cwd):
    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHONPATH', 'LOCAL_RANK', 'RANK', 'WORLD_SIZE', 'MASTER_ADDR',
                        'MASTER_PORT')}
    env.update(PYTHON=PYTHON, TORCH_FORCE_WEIGHTS_ONLY_LOAD='1', OMP_NUM_THREADS='1')
    for attempt in range(2):
        env['PORT'] = str(free_port())
        proc = subprocess.run(['bash', osp.join(REPO_ROOT, 'tools', script), *map(str, args)],
                              cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        output = proc.stdout + proc.stderr
        if proc.returncode == 0 or attempt == 1 or \
                not any(err in output for err in _PORT_ERRORS):
            break
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return output


@pytest.mark.skipif(not torch.distributed.is_available() or
                    not torch.distributed.is_gloo_available(),
                    reason='torch.distributed with the gloo backend is not available')
def test_dist_train_and_test_two_cpu_processes(tmp_path):
    cfg = write_toy_config(tmp_path / 'toy_dist.py')
    work = tmp_path / 'work'
    # 8 samples, batch 2 per process, 2 processes: 2 iterations per process
    run_script('dist_train.sh', [cfg, 2, '--work-dir', work, '--cfg-options',
                                 'train_dataloader.dataset.num_samples=8'], tmp_path)
    probes = [json.loads((work / f'probe_after_train_rank{r}.json').read_text())
              for r in (0, 1)]
    for rank, probe in enumerate(probes):
        assert probe['rank'] == rank and probe['world_size'] == 2
        assert probe['iter'] == 2 and probe['epoch'] == 1
    # DDP kept both replicas identical
    assert probes[0]['param_sum'] == pytest.approx(probes[1]['param_sum'], rel=1e-6)
    ckpt = torch.load(work / 'epoch_1.pth', map_location='cpu', weights_only=True)
    assert ckpt['meta']['iter'] == 2
    assert all(not k.startswith('module.') for k in ckpt['state_dict'])

    out = tmp_path / 'preds.pkl'
    log = run_script('dist_test.sh', [cfg, work / 'epoch_1.pth', 2, '--out', out], tmp_path)
    assert 'toy/mae:' in log
    with open(out, 'rb') as f:
        results = pickle.load(f)
    # results of both ranks are collected, each image exactly once
    assert sorted(r['img_id'] for r in results) == [f'toy/{i}' for i in range(4)]
    assert all(r['pred_instances']['keypoints'].shape == (1, 5, 2) for r in results)
