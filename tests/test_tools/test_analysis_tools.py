"""The analysis tools that had no test: plot_loss_curves.py (constructed mmengine scalar logs),
eval_held_out.py (the published weights on the shared data reproduce the README's numbers) and
train_speed_benchmark.py (a few real training iterations on the shared images)."""
import json

import cv2
import pytest

from tests.fixtures_weights import converted_mnet_checkpoint
from tests.helpers import REPO_ROOT, load_script, requires_shared

SHARED_CONFIG = str(REPO_ROOT / 'configs' / 'retinaface_mnet025_wider_shared.py')


def _write_scalars(path, losses, evals):
    """mmengine LocalVisBackend lines: training records (iter / step, lr, losses, times) and
    evaluation records (metrics, step = epoch)."""
    path.parent.mkdir(parents=True)
    lines = []
    for it, (loss, cls) in losses:
        lines.append(dict(lr=0.01, data_time=0.1, loss=loss, loss_cls=cls,
                          loss_bbox=loss - cls, time=0.5, iter=it, memory=0, step=it))
    for epoch, ap in evals:
        lines.append({'wider_face/easy': ap, 'wider_face/medium': ap / 2,
                      'data_time': 0.1, 'time': 0.2, 'step': epoch})
    path.write_text('\n'.join(json.dumps(rec) for rec in lines) + '\n')


def test_plot_loss_curves(tmp_path, capsys):
    tool = load_script('tools/analysis_tools/plot_loss_curves.py')
    work = tmp_path / 'work'
    _write_scalars(work / '20261201_000000' / 'vis_data' / 'scalars.json', [(10, (9.0, 1.0))],
                   [])
    _write_scalars(work / '20261204_000000' / 'vis_data' / 'scalars.json',
                   [(10, (3.0, 1.0)), (20, (2.0, 0.5)), (30, (1.0, 0.25))],
                   [(1, 0.4), (2, 0.6)])
    out = tmp_path / 'curves.png'
    tool.main([str(work), '--out', str(out), '--smooth', '2', '--title', 'run'])
    text = capsys.readouterr().out
    assert '20261204_000000' in text  # the newest run of the work dir
    assert 'loss: iter 10 3.0000 -> iter 30 1.0000' in text
    assert 'loss_cls: iter 10 1.0000 -> iter 30 0.2500' in text
    assert 'wider_face/easy: ep 1: 0.4000, ep 2: 0.6000' in text
    img = cv2.imread(str(out))
    assert img.shape == (324, 936, 3)  # two panels: losses and AP (5.2 x 3.6 in each, 90 dpi)
    assert tool.moving_average([1, 2, 3, 4], 2) == [1, 1.5, 2.5, 3.5]
    bad = tmp_path / 'bad.json'
    bad.write_text('{"loss": 1, "iter": 1}\nnot json\n')
    with pytest.raises(ValueError, match='bad.json:2: not JSON'):
        tool.load_scalars(str(bad))
    bad.write_text('{"wider_face/easy": 0.5, "step": 1}\n')
    with pytest.raises(ValueError, match='no training loss records'):
        tool.load_scalars(str(bad))
    with pytest.raises(FileNotFoundError, match='no \\*/vis_data/scalars.json'):
        tool.main([str(tmp_path / 'work' / '20261204_000000'), '--out', str(out)])


@requires_shared('weights', 'mobilenet0.25_Final.pth')
@requires_shared('data', 'widerface', 'retinaface_gt', 'train', 'label.txt')
@requires_shared('data', 'widerface', 'eval_ground_truth', 'wider_face_val.mat')
def test_eval_held_out_reproduces_the_readme(tmp_path_factory, tmp_path):
    """README "Results": the converted published weights give held-out AP 0.930, NME 0.065,
    15.5 % failures, val 1.000 / 0.929 / 0.922."""
    tool = load_script('tools/analysis_tools/eval_held_out.py')
    ckpt = converted_mnet_checkpoint(tmp_path_factory)
    out = tmp_path / 'metrics.json'
    tool.main([SHARED_CONFIG, str(ckpt), '--out', str(out), '--work-dir', str(tmp_path / 'w')])
    metrics = json.loads(out.read_text())
    held, val = metrics['held_out'], metrics['val']
    assert held['face_ap/num_faces'] == 707 and held['landmark/num_faces'] == 633
    assert round(held['face_ap/ap'], 3) == 0.930
    assert round(held['landmark/nme'], 3) == 0.065
    assert round(100 * held['landmark/failure_rate'], 1) == 15.5
    assert [round(val[f'wider_face/{s}'], 3) for s in ('easy', 'medium', 'hard')] == [
        1.0, 0.929, 0.922]


@requires_shared('data', 'widerface', 'retinaface_gt', 'train', 'label.txt')
def test_train_speed_benchmark_runs_real_iterations(tmp_path):
    tool = load_script('tools/analysis_tools/train_speed_benchmark.py')
    out = tmp_path / 'speed.json'
    tool.main([SHARED_CONFIG, '--shared', '--no-init', '--iters', '2', '--warmup', '1',
               '--data-iters', '2', '--batch-size', '2', '--workers', '0', '--out', str(out)])
    res = json.loads(out.read_text())
    train, data = res['train'], res['data']
    assert train['batch_size'] == 2 and train['iters'] == 2
    assert train['images_per_s'] > 0 and 0 <= train['data_wait_share'] <= 1
    # images/s = batch / (s per iteration), up to the rounding of s_per_iter to 1 ms
    ips = train['images_per_s']
    assert abs(ips * train['s_per_iter'] - 2) <= 5e-4 * ips + 0.01
    assert data['images'] == 4 and data['batches'] == 2 and data['images_per_s'] > 0
