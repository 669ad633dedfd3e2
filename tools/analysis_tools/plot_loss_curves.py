"""Plot the training losses and the evaluation AP of a run from mmengine's JSON scalar log.

    python tools/analysis_tools/plot_loss_curves.py work_dirs/retinaface_mnet025_wider_shared \\
        --out docs/loss_curves.png [--smooth 5] [--title ...]

The input is ``<work_dir>/<timestamp>/vis_data/scalars.json`` (written by ``LocalVisBackend``:
one JSON object per line; training lines carry ``iter`` / ``step`` = iteration and the loss
terms, evaluation lines ``step`` = epoch and the metrics), or a work dir (its latest run is
used). Left panel: ``loss`` and every ``loss_*`` term against the iteration (log scale, optional
moving average); right panel: every metric of ``--metric-prefix`` (default ``wider_face/``:
easy / medium / hard AP) against the epoch. Uses matplotlib's Agg backend (no display).
A short summary (first / last value of each loss, the last metrics) is printed.
"""
import argparse
import glob
import json
import os
import os.path as osp
from collections import defaultdict


def find_scalars(path: str) -> str:
    """``path`` itself if it is a file, else the newest ``*/vis_data/scalars.json`` in it."""
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise FileNotFoundError(f'{path!r} is neither a scalars.json file nor a work dir')
    found = sorted(glob.glob(osp.join(path, '*', 'vis_data', 'scalars.json')))
    if not found:
        raise FileNotFoundError(f'no */vis_data/scalars.json under {path!r} (was the run '
                                'made with LocalVisBackend?)')
    return found[-1]


def load_scalars(path: str, metric_prefix: str = 'wider_face/'):
    """Return ``(train, evals)``: ``{key: ([iter], [value])}`` and ``{key: ([epoch], [value])}``."""
    train = defaultdict(lambda: ([], []))
    evals = defaultdict(lambda: ([], []))
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f'{path}:{line_no}: not JSON ({e})') from e
            if 'iter' in rec and any(k.startswith('loss') for k in rec):
                for k, v in rec.items():
                    if k == 'loss' or k.startswith('loss_'):
                        train[k][0].append(rec['iter'])
                        train[k][1].append(float(v))
            else:
                for k, v in rec.items():
                    if k.startswith(metric_prefix):
                        evals[k][0].append(rec['step'])
                        evals[k][1].append(float(v))
    if not train:
        raise ValueError(f'{path}: no training loss records')
    return dict(train), dict(evals)


def moving_average(values, window: int):
    if window <= 1:
        return list(values)
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def plot(train, evals, out: str, smooth: int = 1, title: str = None) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    ncols = 2 if evals else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 3.6), dpi=90, squeeze=False)
    ax = axes[0, 0]
    keys = ['loss'] + sorted(k for k in train if k != 'loss')
    for k in keys:
        if k not in train:
            continue
        it, val = train[k]
        ax.plot(it, moving_average(val, smooth), label=k, lw=1.4 if k == 'loss' else 1.0)
    ax.set_yscale('log')
    ax.set_xlabel('iteration')
    ax.set_ylabel('training loss' + (f' (moving avg {smooth})' if smooth > 1 else ''))
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=8)
    if evals:
        ax = axes[0, 1]
        for k in sorted(evals):
            ep, val = evals[k]
            ax.plot(ep, val, marker='o', label=k)
        ax.set_xlabel('epoch')
        ax.set_ylabel('AP')
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Plot loss curves and AP from scalars.json')
    parser.add_argument('path', help='scalars.json or a work dir')
    parser.add_argument('--out', default='loss_curves.png', help='output PNG')
    parser.add_argument('--smooth', type=int, default=1, help='moving-average window (points)')
    parser.add_argument('--metric-prefix', default='wider_face/', help='metrics to plot')
    parser.add_argument('--title', default=None)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    path = find_scalars(args.path)
    train, evals = load_scalars(path, args.metric_prefix)
    plot(train, evals, args.out, smooth=args.smooth, title=args.title)
    print(f'read {path}')
    for k in sorted(train):
        it, val = train[k]
        print(f'{k:>14}: iter {it[0]} {val[0]:.4f} -> iter {it[-1]} {val[-1]:.4f}')
    for k in sorted(evals):
        ep, val = evals[k]
        print(f'{k:>18}: ' + ', '.join(f'ep {e}: {v:.4f}' for e, v in zip(ep, val)))
    print(f'saved {args.out}')


if __name__ == '__main__':
    main()
