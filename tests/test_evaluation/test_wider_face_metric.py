"""WIDERFaceMetric inside mmengine's Evaluator, the submission it writes and the tools."""
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData

from projects.retinaface.evaluation.functional import load_wider_preds
from projects.retinaface.evaluation.metrics import WIDERFaceMetric
from tests.helpers import PYTHON, REPO_ROOT, requires_shared, shared_path
from tests.test_evaluation.test_wider_eval import (
    TINY_EVENTS,
    TINY_KEEP,
    TINY_PREDS,
    _write_official_gt,
)


@pytest.fixture()
def tiny_gt_dir(tmp_path):
    d = tmp_path / 'gt'
    d.mkdir()
    _write_official_gt(str(d), TINY_EVENTS, TINY_KEEP)
    return str(d)


def _samples(as_dict=True, use_img_id=False):
    """The hand-worked prediction set of test_wider_eval as data samples (xyxy, float32)."""
    out = []
    for key, dets in TINY_PREDS.items():
        xyxy = dets[:, :4].copy()
        xyxy[:, 2:] += xyxy[:, :2]
        pred = dict(bboxes=torch.tensor(xyxy, dtype=torch.float32).reshape(-1, 4),
                    scores=torch.tensor(dets[:, 4], dtype=torch.float32),
                    labels=torch.zeros(len(dets), dtype=torch.long))
        meta = dict(img_id=key, ori_shape=(100, 100), scale_factor=(1., 1.))
        if not use_img_id:
            meta['img_path'] = f'/data/WIDER_val/images/{key}.jpg'
        if as_dict:
            out.append(dict(meta, pred_instances=pred))
        else:
            s = DetDataSample(metainfo=meta)
            s.pred_instances = InstanceData(**pred)
            out.append(s)
    return out


def _evaluate(metric_cfg, samples):
    register_all_modules(init_default_scope=True)
    evaluator = Evaluator(metric_cfg)
    evaluator.process(samples[:2])
    evaluator.process(samples[2:])  # two batches
    return evaluator.evaluate(len(samples))


@pytest.mark.parametrize('as_dict', [True, False])
def test_metric_in_evaluator_gives_hand_worked_aps(tiny_gt_dir, tmp_path, as_dict):
    # Same set as test_wider_eval.test_hand_worked_aps: AP 5/9, 5/8, 17/25. ev/d has no
    # detection but still gets an entry (its face counts; without it easy would be 5/6).
    sub = str(tmp_path / 'submission')
    png = str(tmp_path / 'pr.png')
    res = _evaluate(dict(type='WIDERFaceMetric', gt_dir=tiny_gt_dir, submission_dir=sub,
                         pr_curve_path=png), _samples(as_dict))
    assert set(res) == {'wider_face/easy', 'wider_face/medium', 'wider_face/hard'}
    assert res['wider_face/easy'] == pytest.approx(5 / 9, abs=1e-12)
    assert res['wider_face/medium'] == pytest.approx(5 / 8, abs=1e-12)
    assert res['wider_face/hard'] == pytest.approx(17 / 25, abs=1e-12)
    assert osp.getsize(png) > 1000
    # the submission has every image, the empty one included, in x y w h
    files = load_wider_preds(sub)
    assert sorted(files) == sorted(TINY_PREDS)
    assert files['ev/d'].shape == (0, 5)
    np.testing.assert_allclose(files['ev/a'], TINY_PREDS['ev/a'], atol=1e-6)
    with open(osp.join(sub, 'ev', 'a.txt')) as f:
        assert f.read().split('\n')[:3] == ['a', '5', '0.000 0.000 10.000 10.000 0.900000']
    # and the tool reads it back to the same APs (the metric evaluates what it writes)
    sys.path.insert(0, osp.join(str(REPO_ROOT), 'tools', 'analysis_tools'))
    try:
        import wider_eval as tool
    finally:
        sys.path.pop(0)
    tool_res = tool.main([sub, tiny_gt_dir])
    for s in ('easy', 'medium', 'hard'):
        assert tool_res[s]['ap'] == res[f'wider_face/{s}']


def test_metric_keys_from_img_id_and_subset(tiny_gt_dir):
    samples = [s for s in _samples(use_img_id=True) if s['img_id'] != 'ev/d']
    res = _evaluate(dict(type='WIDERFaceMetric', gt_dir=tiny_gt_dir, prefix='wf'), samples)
    # ev/d not seen: only the evaluated images count, easy = 1/2 + 1/2 * 2/3 = 5/6
    assert res['wf/easy'] == pytest.approx(5 / 6, abs=1e-12)


def test_metric_format_only_and_errors(tmp_path):
    m = WIDERFaceMetric(format_only=True, submission_dir=str(tmp_path / 's'))
    m.process(None, _samples()[:1])
    assert m.compute_metrics(m.results) == {}
    assert osp.isfile(tmp_path / 's' / 'ev' / 'a.txt')
    with pytest.raises(ValueError, match='gt_dir'):
        WIDERFaceMetric()
    with pytest.raises(ValueError, match='submission_dir'):
        WIDERFaceMetric(format_only=True)
    bad = WIDERFaceMetric(gt_dir=str(tmp_path))
    with pytest.raises(ValueError, match='img_path'):
        bad.process(None, [dict(img_id=3, pred_instances=dict(bboxes=torch.zeros(0, 4),
                                                               scores=torch.zeros(0)))])


def test_wider_eval_tool_cli(tiny_gt_dir, tmp_path):
    from projects.retinaface.evaluation.functional import save_wider_preds
    save_wider_preds(str(tmp_path / 'p'), TINY_PREDS)
    png = tmp_path / 'curve.png'
    out = subprocess.run([PYTHON, osp.join(str(REPO_ROOT), 'tools', 'analysis_tools',
                                           'wider_eval.py'), str(tmp_path / 'p'), tiny_gt_dir,
                          '--pr-curve', str(png)], cwd=str(tmp_path), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'Easy Val AP: 0.5556' in out.stdout and 'Hard Val AP: 0.6800' in out.stdout
    assert png.is_file()


@requires_shared('data', 'widerface', 'eval_ground_truth', 'wider_hard_val.mat')
def test_benchmark_tool_runs(tmp_path):
    out = subprocess.run([PYTHON, osp.join(str(REPO_ROOT), 'tools', 'analysis_tools',
                                           'benchmark_wider_metric.py'), '--runs', '1',
                          '--fp-per-image', '5', '--gt-dir',
                          str(shared_path('data', 'widerface', 'eval_ground_truth'))],
                         cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert 'ground truth: 3226 images, 39708 faces' in out.stdout
    assert 'evaluation time: median' in out.stdout


def test_benchmark_tool_skips_without_gt(tmp_path):
    out = subprocess.run([PYTHON, osp.join(str(REPO_ROOT), 'tools', 'analysis_tools',
                                           'benchmark_wider_metric.py'), '--gt-dir',
                          str(tmp_path)], cwd=str(tmp_path), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.startswith('SKIP')


def test_unreadable_image_counts_with_no_detections(tiny_gt_dir, tmp_path):
    """An image flagged ``img_unreadable`` (a placeholder for a file that could not be read)
    is evaluated with no detections whatever was predicted on the placeholder, and named in
    the log: with ev/a's detections dropped, its faces count as missed."""
    from mmengine.logging import MMLogger
    samples = _samples()
    dropped = [dict(s, pred_instances=dict(bboxes=s['pred_instances']['bboxes'][:0],
                                           scores=s['pred_instances']['scores'][:0],
                                           labels=s['pred_instances']['labels'][:0]))
               if s['img_id'] == 'ev/a' else s for s in samples]
    expected = _evaluate(dict(type='WIDERFaceMetric', gt_dir=tiny_gt_dir), dropped)
    flagged = [dict(s, img_unreadable=True) if s['img_id'] == 'ev/a' else s for s in samples]
    log_file = tmp_path / 'log.txt'
    MMLogger.get_instance('test_unreadable_metric', log_file=str(log_file))
    sub = str(tmp_path / 'sub')
    res = _evaluate(dict(type='WIDERFaceMetric', gt_dir=tiny_gt_dir, submission_dir=sub),
                    flagged)
    assert res == expected
    assert res['wider_face/easy'] < _evaluate(dict(type='WIDERFaceMetric', gt_dir=tiny_gt_dir),
                                              samples)['wider_face/easy']
    assert load_wider_preds(sub)['ev/a'].shape == (0, 5)
    log = log_file.read_text()
    assert "1 image(s) could not be read and were evaluated with no detections" in log
    assert "['ev/a']" in log
