"""The WIDER FACE evaluation core against hand-worked APs, a literal port and the real gt."""
import os.path as osp

import numpy as np
import pytest
from scipy.io import savemat

from projects.retinaface.evaluation.functional import (
    SETTINGS,
    WiderFaceGT,
    boxoverlap_plus1,
    evaluate_wider,
    load_wider_gt,
    normalize_scores,
    plot_wider_pr_curves,
    voc_ap,
)
from tests.helpers import requires_shared, shared_path

GT_PARTS = ('data', 'widerface', 'eval_ground_truth')


# ---------------------------------------------------------------------------------------------
# A literal, loop-by-loop transcription of the official MATLAB code (read_pred.m sort,
# norm_score.m in single precision, evaluation.m image_evaluation / image_pr_info /
# dataset_pr_info, VOCap.m), slow but obviously faithful, to check the vectorised version.
def _matlab_literal(pred_list, gt_boxes, keep_lists, iou_thr=0.5, thresh_num=1000):
    preds = []
    for p in pred_list:  # read_pred.m: stable descending sort by score
        if p is None or len(p) == 0:
            preds.append(None)
        else:
            p = np.asarray(p, np.float64)
            preds.append(p[np.argsort(-p[:, 4], kind='stable')])
    max_s = np.float32(np.finfo(np.float32).tiny)  # norm_score.m: single precision
    min_s = np.float32(np.finfo(np.float32).max)
    for p in preds:
        if p is not None:
            max_s = max(max_s, np.float32(p[:, 4].max()))
            min_s = min(min_s, np.float32(p[:, 4].min()))
    for p in preds:
        if p is not None:
            with np.errstate(all='ignore'):
                p[:, 4] = ((p[:, 4].astype(np.float32) - min_s) /
                           np.float32(max_s - min_s)).astype(np.float64)
    aps = {}
    for setting, keep in keep_lists.items():
        org = np.zeros((thresh_num, 2))
        count_face = 0
        for pred, gtb, keep_index in zip(preds, gt_boxes, keep):
            count_face += len(keep_index)
            if len(gtb) == 0 or pred is None:
                continue
            ignore = np.zeros(len(gtb))
            ignore[np.asarray(keep_index, int) - 1] = 1
            pred_recall = np.zeros(len(pred))
            recall_list = np.zeros(len(gtb))
            proposal_list = np.ones(len(pred))
            pb = pred.copy()
            pb[:, 2:4] += pb[:, 0:2]
            gb = np.asarray(gtb, np.float64).copy()
            gb[:, 2:4] += gb[:, 0:2]
            for h in range(len(pb)):
                ov = []
                for g in gb:  # boxoverlap.m, one gt at a time
                    w = min(g[2], pb[h, 2]) - max(g[0], pb[h, 0]) + 1
                    hh = min(g[3], pb[h, 3]) - max(g[1], pb[h, 1]) + 1
                    inter = w * hh
                    o = inter / ((g[2] - g[0] + 1) * (g[3] - g[1] + 1) +
                                 (pb[h, 2] - pb[h, 0] + 1) * (pb[h, 3] - pb[h, 1] + 1) - inter)
                    ov.append(0. if (w <= 0 or hh <= 0) else o)
                idx = int(np.argmax(ov))
                if ov[idx] >= iou_thr:
                    if ignore[idx] == 0:
                        recall_list[idx] = -1
                        proposal_list[h] = -1
                    elif recall_list[idx] == 0:
                        recall_list[idx] = 1
                pred_recall[h] = np.sum(recall_list == 1)
            for t in range(1, thresh_num + 1):
                thresh = 1 - t / thresh_num
                r = np.nonzero(pred[:, 4] >= thresh)[0]
                if len(r):
                    r = r[-1]
                    org[t - 1, 0] += np.sum(proposal_list[:r + 1] == 1)
                    org[t - 1, 1] += pred_recall[r]
        with np.errstate(all='ignore'):
            prec = org[:, 1] / org[:, 0]
            rec = org[:, 1] / count_face
        mrec = np.concatenate([[0], rec, [1]])
        mpre = np.concatenate([[0], prec, [0]])
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = np.fmax(mpre[i], mpre[i + 1])
        i = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
        aps[setting] = float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))
    return aps


def _write_official_gt(gt_dir, events, keep):
    """Write ``{event: [(name, boxes xywh)]}`` and ``{setting: {event/name: 1-based idx}}``
    as the official .mat files (cell columns, like the real ones)."""

    def cells(items):
        arr = np.empty((len(items), 1), dtype=object)
        for i, it in enumerate(items):
            arr[i, 0] = it
        return arr

    names = list(events)
    file_list = cells([cells([np.array([n]) for n, _ in events[e]]) for e in names])
    bbx = cells([cells([np.asarray(b, np.int32).reshape(-1, 4) for _, b in events[e]])
                 for e in names])
    common = dict(event_list=cells([np.array([e]) for e in names]), file_list=file_list,
                  face_bbx_list=bbx)
    savemat(osp.join(gt_dir, 'wider_face_val.mat'), common)
    for s, per_img in keep.items():
        gl = cells([cells([np.asarray(per_img.get(f'{e}/{n}', []), np.uint8).reshape(-1, 1)
                           for n, _ in events[e]]) for e in names])
        savemat(osp.join(gt_dir, f'wider_{s}_val.mat'), dict(common, gt_list=gl))


# The tiny hand-built ground truth (x y w h, 10x10 boxes have +1-convention area 11*11):
#   ev/a: f1 (0,0,10,10) easy+medium+hard, f2 (20,0,10,10) medium+hard, f3 (40,0,10,10) hard
#   ev/b: g1 (0,0,20,20) all settings
#   ev/c: no face at all (an image without faces)
#   ev/d: d1 (0,0,10,10) all settings, never predicted (an image predicted empty)
TINY_EVENTS = {
    'ev': [('a', [[0, 0, 10, 10], [20, 0, 10, 10], [40, 0, 10, 10]]),
           ('b', [[0, 0, 20, 20]]),
           ('c', np.zeros((0, 4))),
           ('d', [[0, 0, 10, 10]])]
}
TINY_KEEP = {
    'easy': {'ev/a': [1], 'ev/b': [1], 'ev/d': [1]},
    'medium': {'ev/a': [1, 2], 'ev/b': [1], 'ev/d': [1]},
    'hard': {'ev/a': [1, 2, 3], 'ev/b': [1], 'ev/d': [1]},
}
# Predictions (x y w h score):
#   ev/a: p1 on f1 0.9; p2 on f1 again 0.8 (duplicate); p3 on f2 0.7; p4 on f3 0.6;
#         p5 on nothing 0.5 (false positive)
#   ev/b: q1 on g1 0.7 (same score as p3: a tie across images)
#   ev/c: r1 0.95 and r2 0.1 on an image without faces: they only set the normalisation range
#   ev/d: no detection (empty entry)
TINY_PREDS = {
    'ev/a': np.array([[0, 0, 10, 10, .9], [0, 0, 10, 10, .8], [20, 0, 10, 10, .7],
                      [40, 0, 10, 10, .6], [60, 0, 10, 10, .5]]),
    'ev/b': np.array([[0, 0, 20, 20, .7]]),
    'ev/c': np.array([[0, 0, 10, 10, .95], [5, 5, 10, 10, .1]]),
    'ev/d': np.zeros((0, 5)),
}


def _tiny_gt():
    return WiderFaceGT.from_arrays({f'ev/{n}': b for n, b in TINY_EVENTS['ev']}, TINY_KEEP)


def test_hand_worked_aps():
    # Scores are normalised over all predictions, min 0.1 and max 0.95 (both on ev/c):
    # n(s) = (s - 0.1) / 0.85: p1 .941, p2 .824, p3 = q1 .706, p4 .588, p5 .471; no value
    # lies on the 0.001 threshold grid, and ev/c's boxes never count (image without faces).
    #
    # easy (kept f1, g1, d1: 3 faces): p1 TP, p2 FP (f1 again), p3 / p4 matched to the ignored
    # f2 / f3 -> neither TP nor FP, q1 TP, p5 FP. Thresholds in
    #   (.824, .941]: 1 proposal, 1 TP -> P 1,   R 1/3
    #   (.706, .824]: 2, 1            -> P 1/2, R 1/3
    #   (.471, .706]: 3 (p1 p2 q1), 2 -> P 2/3, R 2/3
    #   <= .471:      4, 2            -> P 1/2, R 2/3
    # VOC AP = 1/3 * 1 + 1/3 * 2/3 = 5/9.
    # medium (f1 f2 g1 d1: 4): p1 TP, p2 FP, p3 TP, q1 TP, p4 ignored, p5 FP:
    #   (.824, .941]: P 1 R 1/4; (.706, .824]: P 1/2 R 1/4; (.471, .706]: 4 props 3 TP
    #   P 3/4 R 3/4; <= .471: P 3/5 R 3/4.  AP = 1/4 * 1 + 1/2 * 3/4 = 5/8.
    # hard (all 5): p1 TP, p2 FP, p3 TP, q1 TP, p4 TP, p5 FP:
    #   (.824, .941]: P 1 R 1/5; (.706, .824]: P 1/2 R 1/5; (.588, .706]: 4 props 3 TP
    #   P 3/4 R 3/5; (.471, .588]: 5, 4 -> P 4/5 R 4/5; <= .471: P 4/6 R 4/5.
    #   Interpolated: AP = 1/5 * 1 + 2/5 * 4/5 + 1/5 * 4/5 = 17/25.
    gt = _tiny_gt()
    res = evaluate_wider(TINY_PREDS, gt)
    assert res['easy']['ap'] == pytest.approx(5 / 9, abs=1e-12)
    assert res['medium']['ap'] == pytest.approx(5 / 8, abs=1e-12)
    assert res['hard']['ap'] == pytest.approx(17 / 25, abs=1e-12)
    assert [res[s]['num_faces'] for s in SETTINGS] == [3, 4, 5]
    assert res['num_images'] == 4 and res['num_images_missing'] == 0
    assert res['num_predictions'] == 8
    # the curve itself at a few thresholds (index t-1 for threshold 1 - t/1000)
    r = res['hard']
    t = np.array([1000 - 900, 1000 - 800, 1000 - 600, 1000 - 500, 1000]) - 1
    np.testing.assert_allclose(r['precision'][t], [1, .5, .75, .8, 4 / 6])
    np.testing.assert_allclose(r['recall'][t], [.2, .2, .6, .8, .8])
    assert np.isnan(r['precision'][0])  # threshold .999: no proposal -> 0/0 as in MATLAB
    assert _matlab_literal([TINY_PREDS[k] for k in gt.image_keys], gt.boxes,
                           {s: [np.nonzero(m)[0] + 1 for m in gt.keep[s]] for s in SETTINGS}) \
        == pytest.approx({s: res[s]['ap'] for s in SETTINGS}, abs=1e-12)


def test_subset_and_missing_images():
    gt = _tiny_gt()
    preds = {k: v for k, v in TINY_PREDS.items() if k != 'ev/d'}
    # skip: ev/d is not evaluated, easy has 2 faces: P 1 R 1/2, then P 2/3 R 1 ->
    # AP = 1/2 + 1/2 * 2/3 = 5/6
    res = evaluate_wider(preds, gt, missing='skip')
    assert res['easy']['ap'] == pytest.approx(5 / 6, abs=1e-12)
    assert res['num_images'] == 3 and res['num_images_missing'] == 1
    assert res['easy']['num_faces'] == 2 and res['easy']['num_faces_missing'] == 1
    # empty (official: a missing file is an image without detections) = predicted empty
    res_empty = evaluate_wider(preds, gt, missing='empty')
    assert res_empty['easy']['ap'] == pytest.approx(5 / 9, abs=1e-12)
    assert res_empty['num_images'] == 4
    # unknown images are reported and ignored (not even in the normalisation)
    res_unknown = evaluate_wider(dict(TINY_PREDS, **{'other/x': np.array([[0, 0, 5, 5, 99.]])}),
                                 gt)
    assert res_unknown['num_images_unknown'] == 1
    assert res_unknown['unknown_images'] == ['other/x']
    assert res_unknown['hard']['ap'] == pytest.approx(17 / 25, abs=1e-12)


def test_ignored_face_absorbs_every_match_kept_face_only_once():
    # One image: f1 (0,0,10,10) kept in easy and hard, f2 (30,0,10,10) kept in hard only.
    # Three predictions on f2 (.9 .8 .7), two on f1 (.6 .45). Normalised (s - .45) / .45:
    # 1, .778, .556, .333, 0.
    gt = WiderFaceGT.from_arrays({'e/i': [[0, 0, 10, 10], [30, 0, 10, 10]]},
                                 {'easy': {'e/i': [1]}, 'hard': {'e/i': [1, 2]}})
    preds = {'e/i': np.array([[30, 0, 10, 10, .9], [30, 0, 10, 10, .8], [31, 0, 10, 10, .7],
                              [0, 0, 10, 10, .6], [1, 1, 10, 10, .45]])}
    res = evaluate_wider(preds, gt)
    # easy: all three f2 matches are ignored (f2 absorbs any number of them); .6 is TP, .45
    # (normalised 0, only at threshold 0) a duplicate FP: P 1 R 1 from .333 down -> AP 1.
    # (Counting the ignored matches as FPs would give 1/4; ignoring only the first, 1/3.)
    assert res['easy']['ap'] == pytest.approx(1.0, abs=1e-12)
    # hard: .9 TP (f2), .8 .7 FP (f2 already matched, no re-assignment), .6 TP, .45 FP:
    # (.778, 1]: P 1 R 1/2; (.556, .778]: P 1/2; (.333, .556]: P 1/3; (0, .333]: 4 props
    # 2 TP P 1/2 R 1; 0: P 2/5.  AP = 1/2 * 1 + 1/2 * 1/2 = 3/4.
    assert res['hard']['ap'] == pytest.approx(0.75, abs=1e-12)


def test_score_ties_and_input_order_do_not_matter():
    # f1 (0,0,10,10): a tight and a loose prediction with the same score .8, then an FP .2.
    # Both .8 predictions pass the same thresholds, so whichever takes the TP the counts are
    # 2 proposals / 1 TP (P 1/2, R 1) for all thresholds down to n(.2) = 0, then 3 / 1.
    # AP = 1 * 1/2.
    gt = WiderFaceGT.from_arrays({'e/i': [[0, 0, 10, 10]]}, {'hard': {'e/i': [1]}})
    p = np.array([[2, 2, 10, 10, .8], [0, 0, 10, 10, .8], [50, 50, 5, 5, .2]])
    aps = [evaluate_wider({'e/i': p[perm]}, gt)['hard']['ap']
           for perm in ([0, 1, 2], [1, 0, 2], [2, 1, 0])]
    assert aps == pytest.approx([0.5] * 3, abs=1e-12)


def test_constant_scores_give_nan_scores_and_zero_ap_like_matlab():
    # max == min: (s - min) / (max - min) = 0/0 = NaN, no prediction passes a threshold.
    gt = WiderFaceGT.from_arrays({'e/i': [[0, 0, 10, 10]]}, {'hard': {'e/i': [1]}})
    res = evaluate_wider({'e/i': np.array([[0, 0, 10, 10, 1.]])}, gt)
    assert res['hard']['ap'] == 0
    assert np.isnan(normalize_scores(np.array([.5, .5]))).all()


def test_iou_plus_one_convention_and_threshold():
    # gt (0,0,9,9) xywh -> xyxy (0,0,9,9), +1 area 100. pred xyxy (0,0,9,4): inter 10*5 = 50,
    # union 100 + 50 - 50 = 100 -> IoU exactly 0.5, which matches (>= 0.5).
    o = boxoverlap_plus1(np.array([[0., 0, 9, 9]]), np.array([[0., 0, 9, 4], [10., 0, 19, 9],
                                                               [9., 9, 18, 18]]))
    np.testing.assert_array_equal(o[:, 0], [0.5, 0., 1 / 199])
    gt = WiderFaceGT.from_arrays({'e/i': [[0, 0, 9, 9]]}, {'hard': {'e/i': [1]}})
    preds = {'e/i': np.array([[0, 0, 9, 4, .9], [100, 100, 5, 5, .1]])}
    assert evaluate_wider(preds, gt)['hard']['ap'] == pytest.approx(1.0)
    assert evaluate_wider(preds, gt, iou_thr=0.51)['hard']['ap'] == 0


def test_voc_ap_matches_definition():
    assert voc_ap(np.array([.5, 1.]), np.array([1., .5])) == pytest.approx(.75)
    # NaN precision is skipped by the suffix max (MATLAB max ignores NaN)
    assert voc_ap(np.array([0., .5, 1.]), np.array([np.nan, 1., .5])) == pytest.approx(.75)


def test_vectorised_equals_literal_matlab_port_on_random_sets():
    rng = np.random.default_rng(0)
    gts, keeps, preds = {}, {s: {} for s in SETTINGS}, {}
    for i in range(12):
        n = int(rng.integers(0, 7))
        xy = rng.integers(0, 60, (n, 2))
        wh = rng.integers(-1, 20, (n, 2))
        boxes = np.concatenate([xy, wh], 1).astype(float)
        if n > 2:
            boxes[2] = boxes[1]  # identical faces
        key = f'e{i % 3}/img{i}'
        gts[key] = boxes
        hard = np.nonzero(rng.random(n) < .8)[0] + 1
        med = hard[rng.random(hard.size) < .7]
        keeps['hard'][key], keeps['medium'][key] = hard, med
        keeps['easy'][key] = med[rng.random(med.size) < .6]
        if i == 5:
            continue  # a missing image
        k = int(rng.integers(0, 12))
        src = boxes[rng.integers(0, n, k)] if n else np.zeros((k, 4))
        jit = src + rng.normal(0, 2, (k, 4))
        rnd = np.concatenate([rng.uniform(0, 60, (k, 2)), rng.uniform(1, 20, (k, 2))], 1)
        p = np.where(rng.random((k, 1)) < .7, jit, rnd)
        scores = np.round(rng.random(k), 2)  # rounding makes ties
        preds[key] = np.concatenate([p, scores[:, None]], 1)
    gt = WiderFaceGT.from_arrays(gts, keeps)
    for missing in ('skip', 'empty'):
        res = evaluate_wider(preds, gt, missing=missing)
        keys = [k for k in gt.image_keys if missing == 'empty' or k in preds]
        lit = _matlab_literal([preds.get(k) for k in keys], [gts[k] for k in keys],
                              {s: [keeps[s][k] for k in keys] for s in SETTINGS})
        for s in SETTINGS:
            assert res[s]['ap'] == pytest.approx(lit[s], abs=1e-12), (missing, s)
        assert 0 < res['hard']['ap'] < 1


def test_official_mat_layout_round_trip(tmp_path):
    _write_official_gt(str(tmp_path), TINY_EVENTS, TINY_KEEP)
    gt = load_wider_gt(str(tmp_path))
    assert gt.image_keys == ['ev/a', 'ev/b', 'ev/c', 'ev/d']
    np.testing.assert_array_equal(gt.boxes[0], np.array(TINY_EVENTS['ev'][0][1], float))
    assert gt.boxes[2].shape == (0, 4)
    assert [int(m.sum()) for m in gt.keep['medium']] == [2, 1, 0, 1]
    res = evaluate_wider(TINY_PREDS, gt)
    assert res['hard']['ap'] == pytest.approx(17 / 25, abs=1e-12)
    with pytest.raises(FileNotFoundError, match='wider_face_val.mat'):
        load_wider_gt(str(tmp_path / 'nowhere'))


def test_bad_keep_index_is_a_clear_error():
    with pytest.raises(ValueError, match='1-based'):
        WiderFaceGT.from_arrays({'e/i': [[0, 0, 5, 5]]}, {'hard': {'e/i': [0]}})
    gt = _tiny_gt()
    with pytest.raises(ValueError, match='ev/a'):
        evaluate_wider({'ev/a': np.zeros((2, 4))}, gt)


def test_pr_curve_png(tmp_path):
    res = evaluate_wider(TINY_PREDS, _tiny_gt())
    out = plot_wider_pr_curves(res, str(tmp_path / 'pr' / 'curves.png'))
    with open(out, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


@requires_shared(*GT_PARTS, 'wider_hard_val.mat')
def test_real_gt_layout():
    gt = load_wider_gt(str(shared_path(*GT_PARTS)))
    assert len(gt) == 3226 and gt.face_offsets[-1] == 39708
    assert [int(gt.keep_flat[s].sum()) for s in SETTINGS] == [7211, 13319, 31958]
    assert gt.image_keys[0] == '0--Parade/0_Parade_marchingband_1_465'
    # keep lists are nested: easy in medium in hard
    assert not (gt.keep_flat['easy'] & ~gt.keep_flat['medium']).any()
    assert not (gt.keep_flat['medium'] & ~gt.keep_flat['hard']).any()


@requires_shared(*GT_PARTS, 'wider_hard_val.mat')
def test_perfect_predictions_on_real_val():
    """Predicting every ground-truth box exactly (kept faces with scores in [0.5, 1]).

    easy and medium reach AP 1. hard cannot: it keeps two faces that no prediction can
    recall, so a perfect set scores 31956 / 31958 when those two predictions get the lowest
    score (they then only enter at the last threshold, after every TP):
    - 21--Festival/21_Festival_Festival_21_604 faces 65 and 104 are the same box: both
      predictions match face 65 (the first of equal overlaps), the second is a duplicate FP;
    - 39--Ice_Skating/39_Ice_Skating_iceskiing_39_583 face 8 has w = -2: its overlap with
      anything, itself included, is 0, so it is never matched and its prediction is an FP.
    Faces outside a setting (including w = 0 / h = 0 boxes and [0 0 0 0] placeholders) are
    matched by their own prediction (IoU 1 with the +1 convention) and ignored.
    """
    gt = load_wider_gt(str(shared_path(*GT_PARTS)))
    rng = np.random.default_rng(0)
    preds = {}
    for key, boxes in zip(gt.image_keys, gt.boxes):
        scores = 0.5 + 0.5 * rng.random(boxes.shape[0])
        preds[key] = np.concatenate([boxes, scores[:, None]], 1)
    preds['21--Festival/21_Festival_Festival_21_604'][103, 4] = 0.
    preds['39--Ice_Skating/39_Ice_Skating_iceskiing_39_583'][7, 4] = 0.
    res = evaluate_wider(preds, gt)
    assert res['easy']['ap'] == pytest.approx(1.0, abs=1e-12)
    assert res['medium']['ap'] == pytest.approx(1.0, abs=1e-12)
    assert res['hard']['ap'] == pytest.approx(31956 / 31958, abs=1e-12)
    assert res['hard']['recall'][-1] == pytest.approx(31956 / 31958)
    assert res['num_images'] == 3226 and res['num_predictions'] == 39708
