"""Publish a trained checkpoint: weights and plain metadata only, named with its SHA-256 prefix.

Usage::

    python tools/model_converters/publish_model.py \\
        work_dirs/retinaface_mnet025_wider_shared/epoch_16.pth retinaface_mnet025.pth
    # -> retinaface_mnet025-<first 8 hex digits of the file's sha256>.pth

mmdet's convention (``tools/model_converters/publish_model.py``), for the checkpoints of this
project: a ``Runner`` checkpoint also holds the optimizer and scheduler states and the message
hub (``HistoryBuffer`` objects with numpy arrays), which users do not need and which plain
``torch.load(weights_only=True)`` refuses. The published file keeps ``state_dict`` (an EMA
checkpoint's ``state_dict`` already holds the EMA weights) and the parts of ``meta`` that are
plain Python values: ``dataset_meta`` (class names, which ``init_detector`` and the inferencers
read), the config text ``cfg``, ``epoch``, ``iter``, ``seed``, versions and times; any other
meta entry is dropped and listed. Tensors are stored contiguous on the CPU with their dtype.

The input is read with this project's weights-only loader (its allowlist covers what mmengine
writes); the output is checked in a fresh Python process with torch's own defaults, i.e. it loads
with ``torch.load(path, weights_only=True)`` anywhere, without this project installed.
"""
import argparse
import hashlib
import os
import os.path as osp
import subprocess
import sys
from collections import OrderedDict

import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

#: Top-level checkpoint keys published by default.
DEFAULT_KEYS = ('meta', 'state_dict')
_PLAIN_SCALARS = (str, int, float, bool, type(None))


def plain(value):
    """``value`` converted to plain Python (str / int / float / bool / None in lists and dicts
    with string keys; numpy scalars and 0-d arrays become Python numbers), or raise TypeError
    for anything else."""
    if isinstance(value, _PLAIN_SCALARS):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError('dict keys must be strings')
        return {k: plain(v) for k, v in value.items()}
    item = getattr(value, 'item', None)  # numpy scalars, 0-d arrays
    if callable(item) and getattr(value, 'ndim', None) == 0:
        return plain(item())
    raise TypeError(f'{type(value).__module__}.{type(value).__qualname__} is not plain data')


def publishable(checkpoint: dict, keys=DEFAULT_KEYS):
    """The published dict of a loaded checkpoint and the names of the dropped meta entries."""
    if not isinstance(checkpoint, dict):
        raise TypeError(f'expected a checkpoint dict, got {type(checkpoint).__name__}')
    if 'state_dict' in checkpoint:
        state_dict = checkpoint['state_dict']
    elif checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state_dict = checkpoint  # a bare state dict
    else:
        raise KeyError(f'no state_dict in the checkpoint (keys: {sorted(checkpoint)})')
    if not state_dict or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise TypeError('state_dict must map parameter names to tensors')
    out, dropped = OrderedDict(), []
    for key in keys:
        if key == 'state_dict':
            out['state_dict'] = OrderedDict(
                (k, v.detach().cpu().contiguous()) for k, v in state_dict.items())
        elif key == 'meta':
            meta = {}
            for k, v in (checkpoint.get('meta') or {}).items():
                try:
                    meta[k] = plain(v)
                except TypeError:
                    dropped.append(f'meta.{k}')
            out['meta'] = meta
        elif key in checkpoint:
            try:
                out[key] = plain(checkpoint[key])
            except TypeError as err:
                raise TypeError(f'cannot publish {key!r}: {err}') from err
        else:
            raise KeyError(f'{key!r} is not in the checkpoint (keys: {sorted(checkpoint)})')
    return out, dropped


def sha256sum(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def check_plain_load(path: str) -> None:
    """Load ``path`` with ``torch.load(weights_only=True)`` in a fresh interpreter (torch's
    defaults, no allowlist of this project); raise RuntimeError if that fails."""
    code = ('import sys, torch; c = torch.load(sys.argv[1], map_location="cpu", '
            'weights_only=True); assert isinstance(c, dict) and "state_dict" in c')
    proc = subprocess.run([sys.executable, '-c', code, path], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'{path} does not load with torch.load(weights_only=True):\n'
                           f'{proc.stderr.strip()[-2000:]}')


def publish(in_file: str, out_file: str, keys=DEFAULT_KEYS, with_hash: bool = True) -> str:
    """Write the published checkpoint; returns its final path."""
    from projects.retinaface.utils.checkpoint_safety import safe_load
    if not osp.isfile(in_file):
        raise FileNotFoundError(f'checkpoint not found: {in_file}')
    checkpoint = safe_load(in_file, map_location='cpu')
    out, dropped = publishable(checkpoint, keys)
    if dropped:
        print(f'dropped meta entries that are not plain data: {", ".join(dropped)}')
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    torch.save(out, out_file)
    check_plain_load(out_file)
    if not with_hash:
        return out_file
    sha = sha256sum(out_file)
    stem, ext = osp.splitext(out_file)
    final = f'{stem}-{sha[:8]}{ext or ".pth"}'
    os.replace(out_file, final)
    return final


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Publish a checkpoint: weights + plain meta, sha256 in the file name')
    parser.add_argument('in_file', help='input checkpoint (e.g. work_dirs/.../epoch_16.pth)')
    parser.add_argument('out_file', help='output file (the hash is appended to its stem)')
    parser.add_argument('--save-keys', nargs='+', default=list(DEFAULT_KEYS),
                        help='top-level keys to keep (default: meta state_dict)')
    parser.add_argument('--no-hash', action='store_true',
                        help='keep OUT_FILE as given instead of appending the sha256 prefix')
    return parser.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    if 'state_dict' not in args.save_keys:
        raise SystemExit('--save-keys must include state_dict')
    final = publish(args.in_file, args.out_file, args.save_keys, not args.no_hash)
    print(f'published {final} (sha256 {sha256sum(final)})')
    return final


if __name__ == '__main__':
    main()
