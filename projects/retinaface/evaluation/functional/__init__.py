"""Numpy evaluation functions (WIDER FACE official algorithm, submission format, PR curves)."""
from .pr_curve import plot_wider_pr_curves
from .wider_eval import (
    SETTINGS,
    WiderFaceGT,
    boxoverlap_plus1,
    evaluate_wider,
    load_wider_gt,
    normalize_scores,
    voc_ap,
)
from .wider_io import (
    format_wider_pred,
    load_wider_preds,
    parse_wider_pred,
    quantize_like_file,
    read_wider_pred,
    save_wider_preds,
    write_wider_pred,
    xyxy_to_xywh,
)

__all__ = [
    'SETTINGS', 'WiderFaceGT', 'boxoverlap_plus1', 'evaluate_wider', 'load_wider_gt',
    'normalize_scores', 'voc_ap', 'plot_wider_pr_curves', 'format_wider_pred',
    'load_wider_preds', 'parse_wider_pred', 'quantize_like_file', 'read_wider_pred',
    'save_wider_preds', 'write_wider_pred', 'xyxy_to_xywh'
]
