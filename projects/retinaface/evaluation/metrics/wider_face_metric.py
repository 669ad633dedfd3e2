"""WIDER FACE easy / medium / hard AP with the official evaluation algorithm."""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from ..functional import (
    SETTINGS,
    evaluate_wider,
    load_wider_gt,
    plot_wider_pr_curves,
    quantize_like_file,
    save_wider_preds,
    xyxy_to_xywh,
)
from ..functional.wider_io import COORD_FMT, SCORE_FMT


def to_numpy(x) -> np.ndarray:
    """Tensor, box structure (``.tensor``) or array-like -> numpy array."""
    if hasattr(x, 'tensor'):
        x = x.tensor
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def wider_image_key(data_sample: dict) -> str:
    """``'event/name'`` of an image: event folder + file stem of ``img_path``, else
    ``img_id`` when it already has the ``'event/name'`` form."""
    img_path = data_sample.get('img_path')
    if img_path:
        event = osp.basename(osp.dirname(img_path))
        stem = osp.splitext(osp.basename(img_path))[0]
        if event and stem:
            return f'{event}/{stem}'
    img_id = data_sample.get('img_id')
    if isinstance(img_id, str) and '/' in img_id.strip('/'):
        event, _, name = img_id.strip('/').rpartition('/')
        return f'{osp.basename(event)}/{osp.splitext(name)[0]}'
    raise ValueError('WIDERFaceMetric needs img_path (<event>/<name>.jpg) or an img_id of the '
                     f"form 'event/name' in each data sample, got img_path={img_path!r}, "
                     f'img_id={img_id!r}')


@METRICS.register_module()
class WIDERFaceMetric(BaseMetric):
    """WIDER FACE AP of the easy, medium and hard settings (official evaluation).

    The numbers are those of the official MATLAB ``eval_tools`` (see
    :mod:`projects.retinaface.evaluation.functional.wider_eval` for the exact rules), computed
    on exactly the values a submission file would hold (coordinates rounded as ``'%.3f'``,
    scores as ``'%.6f'``), so the AP equals that of ``tools/analysis_tools/wider_eval.py`` on the
    files written to ``submission_dir``.

    Only the images seen by the metric are evaluated: ground-truth images without a prediction
    are left out (and counted in the log), and images unknown to the ground truth are reported
    and ignored. Every processed image gets an entry, so an image without detections still
    counts its faces. An image whose file could not be read (``img_unreadable`` in its meta
    information, see ``WIDERFaceDataset``'s ``undecodable_images``) gets an empty entry, even
    from a detector whose head predicts on the placeholder, and is counted and named in the
    log.

    Args:
        gt_dir (str, optional): folder with ``wider_face_val.mat`` and
            ``wider_{easy,medium,hard}_val.mat``. Required unless ``format_only``.
        iou_thr (float): IoU threshold for a match. Defaults to 0.5.
        submission_dir (str, optional): when set, write ``<event>/<name>.txt`` prediction
            files (official format) there. Defaults to None.
        outfile_prefix (str, optional): alias of ``submission_dir`` (mmdet's name).
        pr_curve_path (str, optional): when set, save the three PR curves as one PNG.
        format_only (bool): only write the submission files (e.g. for the test set), no
            evaluation. Defaults to False.
        collect_device (str): device for collecting results across ranks. Defaults to 'cpu'.
        prefix (str, optional): metric name prefix. Defaults to 'wider_face'.
    """
    default_prefix: Optional[str] = 'wider_face'

    def __init__(self,
                 gt_dir: Optional[str] = None,
                 iou_thr: float = 0.5,
                 submission_dir: Optional[str] = None,
                 outfile_prefix: Optional[str] = None,
                 pr_curve_path: Optional[str] = None,
                 format_only: bool = False,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if submission_dir is not None and outfile_prefix is not None \
                and submission_dir != outfile_prefix:
            raise ValueError('give submission_dir or outfile_prefix, not both')
        self.submission_dir = submission_dir if submission_dir is not None else outfile_prefix
        if format_only and self.submission_dir is None:
            raise ValueError('format_only=True needs submission_dir (where to write the files)')
        if not format_only and gt_dir is None:
            raise ValueError('WIDERFaceMetric needs gt_dir (folder with wider_face_val.mat and '
                             'wider_{easy,medium,hard}_val.mat) unless format_only=True')
        if not 0 < iou_thr <= 1:
            raise ValueError(f'iou_thr must be in (0, 1], got {iou_thr}')
        self.gt_dir = gt_dir
        self.iou_thr = iou_thr
        self.pr_curve_path = pr_curve_path
        self.format_only = format_only

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep ``(image key, (n, 5) x1 y1 x2 y2 score)`` of every sample (even empty)."""
        for sample in data_samples:
            key = wider_image_key(sample)
            pred = sample.get('pred_instances')
            if pred is None:
                raise KeyError(f'data sample of {key} has no pred_instances')
            bboxes = to_numpy(pred['bboxes']).astype(np.float64).reshape(-1, 4)
            scores = to_numpy(pred['scores']).astype(np.float64).reshape(-1)
            if bboxes.shape[0] != scores.shape[0]:
                raise ValueError(f'{key}: {bboxes.shape[0]} boxes but {scores.shape[0]} scores')
            unreadable = bool(sample.get('img_unreadable', False))
            if unreadable:  # a placeholder for a file that could not be read: no detections
                bboxes, scores = bboxes[:0], scores[:0]
            self.results.append(
                (key, np.concatenate([bboxes, scores[:, None]], axis=1), unreadable))

    def _to_submission(self, results: List[Tuple[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        preds = {}
        for key, dets, _ in results:
            if key in preds:
                print_log(f'WIDERFaceMetric: image {key} predicted twice, the last is kept',
                          logger='current', level=30)
            preds[key] = quantize_like_file(xyxy_to_xywh(dets), COORD_FMT, SCORE_FMT)
        return preds

    def compute_metrics(self, results: list) -> Dict[str, float]:
        preds = self._to_submission(results)
        if self.submission_dir is not None:
            save_wider_preds(self.submission_dir, preds)
            print_log(f'WIDERFaceMetric: wrote {len(preds)} prediction files to '
                      f'{self.submission_dir}', logger='current')
        if self.format_only:
            return {}
        gt = load_wider_gt(self.gt_dir)
        res = evaluate_wider(preds, gt, iou_thr=self.iou_thr, missing='skip')
        if self.pr_curve_path:
            plot_wider_pr_curves(res, self.pr_curve_path)
            print_log(f'WIDERFaceMetric: PR curves saved to {self.pr_curve_path}',
                      logger='current')
        self._log(res)
        unreadable = sorted(key for key, _, bad in results if bad)
        if unreadable:
            print_log(f'WIDERFaceMetric: {len(unreadable)} image(s) could not be read and were '
                      f'evaluated with no detections (their faces count as missed): '
                      f'{unreadable[:10]}', logger='current', level=30)
        return {s: res[s]['ap'] for s in SETTINGS}

    @staticmethod
    def _log(res: dict) -> None:
        from terminaltables import AsciiTable
        rows = [['setting', 'AP', 'faces evaluated', 'faces not evaluated']]
        for s in SETTINGS:
            r = res[s]
            rows.append([s, f'{r["ap"]:.4f}', str(r['num_faces']), str(r['num_faces_missing'])])
        table = AsciiTable(rows, title='WIDER FACE (official evaluation)').table
        msg = (f'\n{table}\nimages evaluated: {res["num_images"]}, ground-truth images '
               f'without prediction (not evaluated): {res["num_images_missing"]}, images '
               f'unknown to the ground truth (ignored): {res["num_images_unknown"]}, '
               f'predictions: {res["num_predictions"]}')
        print_log(msg, logger='current')
        if res['num_images_unknown']:
            print_log('WIDERFaceMetric: images not in the ground truth, e.g. '
                      f'{res["unknown_images"][:5]}', logger='current', level=30)
