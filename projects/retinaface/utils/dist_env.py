"""Distributed set-up helpers for the tools."""
import os

import torch
import torch.distributed as torch_dist
from mmengine.logging import print_log


def setup_cpu_distributed(cfg, launcher: str) -> bool:
    """Make ``--launcher pytorch`` work without CUDA (CPU processes, gloo backend).

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` and its default DDP wrapper passes
    ``device_ids=[LOCAL_RANK]``; both fail on CPU. When CUDA is unavailable this initialises the
    process group itself with the gloo backend (mmengine then skips ``init_dist``) and makes the
    model wrapper use ``device_ids=None``. With CUDA it does nothing.

    Args:
        cfg (Config): The config, updated in place (``env_cfg.dist_cfg.backend``,
            ``model_wrapper_cfg``).
        launcher (str): The ``--launcher`` argument.

    Returns:
        bool: Whether CPU distributed mode was set up.
    """
    if launcher != 'pytorch' or torch.cuda.is_available():
        return False
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        if key not in os.environ:
            raise RuntimeError(
                f'--launcher pytorch needs the environment variable {key}; start the script '
                'with torchrun (tools/dist_train.sh, tools/dist_test.sh).')
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') != 'gloo':
        print_log(f'CUDA is not available: using the gloo backend instead of '
                  f'{dist_cfg.get("backend", "nccl")!r} for distributed CPU processes.',
                  logger='current')
        dist_cfg['backend'] = 'gloo'
    if not torch_dist.is_initialized():
        kwargs = {k: v for k, v in dist_cfg.items() if k != 'backend'}
        if 'timeout' in kwargs and not hasattr(kwargs['timeout'], 'total_seconds'):
            from datetime import timedelta
            kwargs['timeout'] = timedelta(seconds=kwargs['timeout'])
        torch_dist.init_process_group(backend='gloo', **kwargs)

    wrapper_cfg = cfg.get('model_wrapper_cfg', None)
    if wrapper_cfg is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    else:
        from mmengine.registry import MODEL_WRAPPERS
        from torch.nn.parallel import DistributedDataParallel
        wrapper_type = MODEL_WRAPPERS.get(wrapper_cfg.get('type', 'MMDistributedDataParallel'))
        if isinstance(wrapper_type, type) and issubclass(wrapper_type, DistributedDataParallel):
            wrapper_cfg.setdefault('device_ids', None)
    return True


def teardown_distributed() -> None:
    """Destroy the default process group at the end of a tool run.

    Without it the gloo backend's threads can still be alive when the interpreter exits, and a
    rank then aborts after its work is done ("terminate called without an active exception",
    SIGABRT), which torchrun reports as a failed run. A barrier first lets every rank finish.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
