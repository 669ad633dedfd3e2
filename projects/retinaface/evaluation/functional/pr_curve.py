"""Precision-recall curves of the WIDER FACE settings in one PNG (matplotlib, Agg)."""
import os
import os.path as osp
from typing import Mapping, Optional, Sequence

import numpy as np

from .wider_eval import SETTINGS


def plot_wider_pr_curves(result: Mapping, out_file: str, settings: Sequence[str] = SETTINGS,
                         title: Optional[str] = None, label: str = 'model') -> str:
    """Save the PR curves of ``settings`` from :func:`evaluate_wider`'s ``result`` as a PNG.

    One panel per setting, like the official plots; the legend gives the AP. Uses the Agg
    canvas directly, so pyplot's global backend is untouched. Returns ``out_file``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    settings = [s for s in settings if s in result]
    if not settings:
        raise ValueError('result has none of the settings to plot')
    fig = Figure(figsize=(5 * len(settings), 4.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(settings), squeeze=False)[0]
    for ax, setting in zip(axes, settings):
        res = result[setting]
        rec = np.asarray(res['recall'], dtype=np.float64)
        prec = np.asarray(res['precision'], dtype=np.float64)
        ok = ~(np.isnan(rec) | np.isnan(prec))
        ax.plot(rec[ok], prec[ok], lw=2, label=f'{label} AP={res["ap"]:.4f}')
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel('Recall')
        ax.set_ylabel('Precision')
        ax.set_title(f'{setting} ({res["num_faces"]} faces)')
        ax.grid(True, alpha=0.3)
        ax.legend(loc='lower left')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    d = osp.dirname(out_file)
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(out_file, format='png')
    return out_file
