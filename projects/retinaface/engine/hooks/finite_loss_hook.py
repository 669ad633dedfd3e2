"""Stop training as soon as a loss becomes NaN or infinite."""
import math
from numbers import Number
from typing import Optional, Sequence

import torch
from mmdet.registry import HOOKS
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook


class NonFiniteLossError(RuntimeError):
    """Raised by :class:`FiniteLossHook` when a loss term is NaN or infinite."""


def _is_finite(value) -> bool:
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value.detach()).all())
    if isinstance(value, Number):
        return math.isfinite(value)
    return True


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Check the losses of every training iteration and stop with a clear error on NaN/inf.

    ``model.train_step`` returns the parsed log variables (``loss`` and every ``loss_*`` term).
    When any of them is not finite, the hook raises :class:`NonFiniteLossError` naming the
    iteration (1-based, as in the logs), the epoch and the offending terms, instead of letting
    training continue silently on corrupted weights. It runs before the checkpoint hook, so the
    corrupted state is not saved by an iteration-based checkpoint.

    Note that the optimizer has already stepped with the non-finite gradients of that iteration;
    restart from the last checkpoint (e.g. with a lower learning rate or ``clip_grad``).

    Args:
        interval (int): Check every ``interval`` iterations. Defaults to 1.
        keys (Sequence[str], optional): Names of the log variables to check. Defaults to None:
            every variable whose name contains ``'loss'`` (the ones mmengine sums into the total).
    """

    priority = 'VERY_HIGH'

    def __init__(self, interval: int = 1, keys: Optional[Sequence[str]] = None) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'interval must be a positive int, but got {interval!r}')
        self.interval = interval
        self.keys = None if keys is None else list(keys)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if outputs is None or not self.every_n_train_iters(runner, self.interval):
            return
        if not isinstance(outputs, dict):
            raise TypeError('FiniteLossHook expects train_step to return a dict of log '
                            f'variables, but got {type(outputs).__name__}')
        if self.keys is None:
            names = [k for k in outputs if 'loss' in k]
        else:
            missing = [k for k in self.keys if k not in outputs]
            if missing:
                raise KeyError(f'FiniteLossHook: keys {missing} are not among the training '
                               f'outputs {list(outputs)}')
            names = self.keys
        bad = [k for k in names if not _is_finite(outputs[k])]
        if not bad:
            return
        # name the individual terms first; the total 'loss' is only a consequence
        bad.sort(key=lambda k: k == 'loss')
        values = ', '.join(f'{k}={self._fmt(outputs[k])}' for k in bad)
        rank, world_size = get_dist_info()
        where = f' on rank {rank}/{world_size}' if world_size > 1 else ''
        try:
            num_batches = f'/{len(runner.train_dataloader)}'
        except TypeError:
            num_batches = ''
        raise NonFiniteLossError(
            f'Non-finite loss at iteration {runner.iter + 1} (epoch {runner.epoch + 1}, batch '
            f'{batch_idx + 1}{num_batches}){where}: {values}. Training was stopped because the '
            'weights are now corrupted. Resume from the last good checkpoint, and consider a '
            'lower learning rate, a longer warm-up or gradient clipping '
            '(optim_wrapper.clip_grad=dict(max_norm=...)); check the annotations of the batch '
            'for degenerate boxes/landmarks.')

    @staticmethod
    def _fmt(value) -> str:
        if isinstance(value, torch.Tensor):
            value = value.detach().float()
            return str(value.item()) if value.numel() == 1 else f'tensor{tuple(value.shape)}'
        return str(value)
