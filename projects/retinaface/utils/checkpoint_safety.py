"""Safe checkpoint loading: weights-only unpickling for mmengine checkpoints.

torch >= 2.6 loads with ``weights_only=True`` by default, but the checkpoints written by mmengine's
``Runner`` pickle more than tensors (the message hub's ``HistoryBuffer`` with its numpy arrays,
numpy scalars such as a best metric value), so mmengine 0.10.7 - which calls ``torch.load``
without ``weights_only`` - cannot resume from its own checkpoints. Setting
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` or passing ``weights_only=False`` would fix that by allowing
arbitrary code execution from any checkpoint file. Instead, :func:`install` (run when
``projects.retinaface`` is imported):

1. allowlists exactly the extra globals mmengine writes (:data:`SAFE_GLOBALS`, below), each of them
   either a plain data class or a *restricted* stand-in that only builds what mmengine saves;
2. replaces mmengine's local-file loader (``CheckpointLoader`` scheme ``''``) with
   :func:`load_from_local`, which always passes ``weights_only=True`` explicitly (so the
   environment variable cannot turn it off), and wraps every other registered scheme (http, ...)
   so that a refused checkpoint raises :class:`UnsafeCheckpointError` - naming the file, the
   offending global and what to do - instead of torch's raw traceback.

The allowlist, found by saving real ``Runner`` checkpoints (model, optimizer, param schedulers,
message hub, meta with seed/dataset_meta, best-checkpoint scores) and listing their globals:

* ``mmengine.logging.history_buffer.HistoryBuffer`` - the message hub's log scalars.
* ``builtins.getattr`` -> :func:`_history_buffer_statistic`: HistoryBuffer pickles its statistics
  methods as ``getattr(HistoryBuffer, 'mean')``; the stand-in resolves only
  ``HistoryBuffer.{min,max,current,mean}`` and refuses anything else.
* ``numpy.dtype`` -> :func:`_numeric_dtype`: builds only bool/int/uint/float dtypes (never
  ``object``), plus the matching dtype classes (``numpy.dtypes.Float64DType`` ...), which numpy
  needs to restore a dtype's state.
* ``numpy.ndarray`` and ``numpy._core.multiarray._reconstruct`` - numpy arrays (HistoryBuffer).
* ``numpy._core.multiarray.scalar`` - numpy scalars (e.g. ``np.float64`` metric values).
  The numpy 1.x spelling ``numpy.core.multiarray.*`` is accepted too.

Everything else torch already allows (tensors, ``OrderedDict``, ``Counter``, builtin containers).
"""
import functools
import os.path as osp
import pickle
import re
import warnings
from typing import Callable, List, Optional

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

try:  # numpy >= 2
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _np_multiarray

__all__ = [
    'SAFE_GLOBALS', 'UnsafeCheckpointError', 'install', 'load_from_local', 'safe_load',
    'find_unsafe_globals'
]

_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')
# dtype kinds allowed in checkpoints: bool, signed int, unsigned int, float
_NUMERIC_DTYPE_KINDS = 'biuf'
_NUMERIC_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32',
                   'uint64', 'float16', 'float32', 'float64')

_ADVICE = (
    'What to do: only if you trust the file, load it once in a trusted Python session and '
    're-save just its tensors, e.g. torch.save({"state_dict": ckpt["state_dict"]}, "clean.pth"); '
    'for checkpoints of other code bases (Pytorch_Retinaface, insightface, mmdet 2.x) use the '
    'converters in tools/model_converters/. Loading with weights_only=False is deliberately not '
    'supported because it executes code stored in the file.')


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds pickled objects outside the weights-only allowlist."""


def _history_buffer_statistic(owner, name):
    """Stand-in for ``builtins.getattr`` in checkpoints: resolves only the statistics methods
    that ``HistoryBuffer.__getstate__`` pickles (``getattr(HistoryBuffer, 'mean')``)."""
    if owner is HistoryBuffer and name in _HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'GLOBAL builtins.getattr is only allowed for HistoryBuffer statistics '
        f'{_HISTORY_BUFFER_STATISTICS}, but the checkpoint asks for getattr({owner!r}, {name!r})')


def _numeric_dtype(spec, align=False, copy=False):
    """Stand-in for ``numpy.dtype`` in checkpoints: only bool/int/uint/float dtypes."""
    dtype = np.dtype(spec, align=align, copy=copy)
    if dtype.kind not in _NUMERIC_DTYPE_KINDS or dtype.fields is not None:
        raise pickle.UnpicklingError(
            f'numpy dtype {dtype!r} is not allowed in checkpoints (only bool, int, uint and '
            'float arrays/scalars are)')
    return dtype


def _np_global(name: str) -> List[tuple]:
    obj = getattr(_np_multiarray, name)
    return [(obj, f'numpy._core.multiarray.{name}'), (obj, f'numpy.core.multiarray.{name}')]


#: The extra globals allowed in weights-only loading (see the module docstring).
SAFE_GLOBALS: List = [
    HistoryBuffer,
    (_history_buffer_statistic, 'builtins.getattr'),
    (_numeric_dtype, 'numpy.dtype'),
    np.ndarray,
    *_np_global('_reconstruct'),
    *_np_global('scalar'),
    # dtype classes (numpy >= 1.20): needed to restore a dtype's state (pickle BUILD)
    *sorted({type(np.dtype(name)) for name in _NUMERIC_DTYPES} - {np.dtype}, key=str),
]

_installed = False


def _global_names(entries) -> List[str]:
    names = []
    for entry in entries:
        if isinstance(entry, tuple):
            names.append(entry[1])
        else:
            names.append(f'{entry.__module__}.{entry.__qualname__}')
    return names


def find_unsafe_globals(filename: str) -> Optional[List[str]]:
    """List the globals in a (zip-format) checkpoint that weights-only loading refuses.

    Returns None when the file cannot be inspected (e.g. legacy, non-zip format).
    """
    get_unsafe = getattr(torch.serialization, 'get_unsafe_globals_in_checkpoint', None)
    if get_unsafe is None:
        return None
    try:
        return sorted(get_unsafe(filename))
    except Exception:  # noqa: BLE001 - inspection is best effort
        return None


def _explain(filename: str, err: Exception) -> UnsafeCheckpointError:
    message = str(err)
    offending = find_unsafe_globals(filename) if isinstance(filename, str) and osp.isfile(
        filename) else None
    if not offending:
        offending = re.findall(r'GLOBAL (\S+) was not an allowed global', message)
    detail = re.search(r'WeightsUnpickler error:\s*(.+)', message)
    if detail:
        # drop torch's advice to allowlist the global: that is for files one trusts
        reason = detail.group(1).strip().split(' Please use `torch.serialization')[0]
    else:
        reason = message.strip().splitlines()[-1] if message.strip() else type(err).__name__
    allowed = ', '.join(sorted(set(_global_names(SAFE_GLOBALS))))
    lines = [
        f'Refusing to load checkpoint {filename!r}: it contains pickled Python objects that '
        'weights-only loading (torch.load(weights_only=True)) does not allow.'
    ]
    if offending:
        lines.append(f'  Offending global(s): {", ".join(offending)}')
    lines += [
        f'  Reason: {reason}',
        '  Besides tensors and plain containers, only these globals are allowed (mmengine '
        f'checkpoint contents, see projects/retinaface/utils/checkpoint_safety.py): {allowed}',
        '  ' + _ADVICE,
    ]
    return UnsafeCheckpointError('\n'.join(lines))


def safe_load(filename, map_location=None):
    """``torch.load(filename, weights_only=True)`` with the allowlist and a clear refusal.

    Args:
        filename (str): Local checkpoint path.
        map_location: Same as :func:`torch.load`.

    Raises:
        UnsafeCheckpointError: The checkpoint pickles objects outside the allowlist.
    """
    install()
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if isinstance(err, UnsafeCheckpointError):
            raise
        raise _explain(filename, err) from err


def load_from_local(filename, map_location=None):
    """Replacement for mmengine's local-file checkpoint loader (scheme ``''``).

    Same contract as ``mmengine.runner.checkpoint.load_from_local`` but always weights-only.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_load(filename, map_location=map_location)


def _explaining(loader: Callable) -> Callable:
    """Wrap a CheckpointLoader scheme so a weights-only refusal becomes UnsafeCheckpointError."""

    @functools.wraps(loader)
    def wrapper(filename, map_location=None, *args, **kwargs):
        try:
            return loader(filename, map_location, *args, **kwargs)
        except pickle.UnpicklingError as err:
            if isinstance(err, UnsafeCheckpointError):
                raise
            raise _explain(filename, err) from err

    wrapper._retinaface_safe = True
    return wrapper


def install() -> None:
    """Allowlist :data:`SAFE_GLOBALS` and route mmengine's checkpoint loading through
    weights-only loading with clear refusals. Idempotent; run on ``import projects.retinaface``.
    """
    global _installed
    if _installed:
        return
    if not hasattr(torch.serialization, 'add_safe_globals'):  # torch < 2.4
        warnings.warn('torch < 2.4 has no torch.serialization.add_safe_globals: mmengine '
                      'checkpoints are loaded with torch\'s default (unsafe) unpickling. '
                      'Upgrade torch for safe checkpoint loading.', stacklevel=2)
        _installed = True
        return
    torch.serialization.add_safe_globals(SAFE_GLOBALS)

    from mmengine.runner.checkpoint import CheckpointLoader
    load_from_local._retinaface_safe = True
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if prefix == '':
            CheckpointLoader._schemes[prefix] = load_from_local
        elif not getattr(loader, '_retinaface_safe', False):
            CheckpointLoader._schemes[prefix] = _explaining(loader)
    if '' not in CheckpointLoader._schemes:
        CheckpointLoader.register_scheme('', load_from_local, force=True)
    _installed = True
