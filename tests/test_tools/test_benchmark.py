"""tools/analysis_tools/benchmark.py: a tiny run through every path (no timing assertions),
and the pieces of the reference baseline and of our PyTorch paths (the ``pytorch`` path,
FastFaceDetector, is tested in tests/test_apis/test_fast_detector.py)."""

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import REPO_ROOT, load_script

CONFIG = str(REPO_ROOT / 'configs' / 'retinaface_mnet025_fpn.py')


_load_tool = load_script


bm = _load_tool('tools/analysis_tools/benchmark.py', 'rf_benchmark')
p2o = _load_tool('tools/deployment/pytorch2onnx.py', 'rf_pytorch2onnx_b')


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _model(score_thr=0.7):
    torch.manual_seed(0)
    model, cfg = p2o.build_model(CONFIG, None, {'model.test_cfg.score_thr': score_thr})
    for conv in model.bbox_head.cls_heads:
        torch.nn.init.normal_(conv.weight, std=20.0)
    return model.eval(), cfg


def test_tiny_run_has_every_row(tmp_path, capsys):
    photo = tmp_path / 'photo.jpg'
    cv2.imwrite(str(photo), _image(120, 160))
    given = tmp_path / 'given.jpg'
    cv2.imwrite(str(given), _image(70, 90, seed=1))
    calib = tmp_path / 'calib'
    calib.mkdir()
    for i in range(2):
        cv2.imwrite(str(calib / f'{i}.jpg'), _image(64, 96, seed=5 + i))
    out = tmp_path / 'table.md'
    assert bm.main([CONFIG, 'none', '--sizes', '96x64', '64x96', '--img', str(given),
                    '--photo', str(photo), '--threads', '1', '--warmup', '1', '--runs', '2',
                    '--calib-dir', str(calib), '--num-calib', '2',
                    '--work-dir', str(tmp_path / 'work'), '--out', str(out)]) == 0
    text = out.read_text()
    assert text.strip() in capsys.readouterr().out
    assert 'Load average' in text
    rows = [line.split('|')[1:-1] for line in text.splitlines()
            if line.startswith('| ') and not line.startswith(('| input', '| ---'))]
    rows = [[c.strip() for c in r] for r in rows]
    inputs = {'96x64', '64x96', 'given.jpg 90x70'}
    assert {(r[0], r[2]) for r in rows} == {(i, p) for i in inputs for p in bm.ALL_PATHS}
    assert len(rows) == len(inputs) * len(bm.ALL_PATHS)
    for r in rows:
        assert r[1] == '1' and float(r[3]) > 0 and float(r[5]) > 0
        assert float(r[6]) == pytest.approx(1.0) if r[2] == 'reference' else float(r[6]) > 0
    assert (tmp_path / 'work' / 'model_fp32.onnx').exists()
    assert (tmp_path / 'work' / 'model_int8.onnx').exists()
    with pytest.raises(ValueError, match='size'):
        bm.make_inputs(['big'], [], str(photo), str(tmp_path))


def test_time_paths_schedules():
    calls = []

    def path(name):
        def fn(img):
            calls.append(name)
            return dict(scores=np.zeros(0))
        return fn

    paths = {'a': path('a'), 'b': path('b')}
    # blocks: 2 warm-up calls each, then rounds of (1 untimed + up to 3 timed) per path
    res = bm.time_paths(paths, 'img.jpg', warmup=2, runs=7, block=3)
    assert [len(r['times']) for r in res.values()] == [7, 7]
    assert calls == (['a'] * 2 + ['b'] * 2 + ['a'] * 4 + ['b'] * 4 + ['a'] * 4 + ['b'] * 4
                     + ['a'] * 2 + ['b'] * 2)
    # block 1: strict alternation of single timed calls, nothing untimed after the warm-up
    calls.clear()
    res = bm.time_paths(paths, 'img.jpg', warmup=1, runs=3, block=1)
    assert calls == ['a', 'b'] + ['a', 'b'] * 3
    assert all(t >= 0 for r in res.values() for t in r['times'])
    with pytest.raises(ValueError, match='block'):
        bm.time_paths(paths, 'img.jpg', warmup=0, runs=1, block=0)


def test_reference_baseline_pieces():
    model, _ = _model()
    ref = bm.ReferenceBaseline(model)
    assert ref.steps == [8, 16, 32] and ref.min_sizes == [[16, 32], [64, 128], [256, 512]]
    # Python-loop priors == mmdet anchors (centre-size, normalised), unpadded odd size
    h, w = 100, 140
    priors = ref.prior_box((h, w))
    sizes = [(-(-h // s), -(-w // s)) for s in (8, 16, 32)]
    anchors = torch.cat(model.bbox_head.prior_generator.grid_priors(sizes, device='cpu'))
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    ctr_size = torch.cat([(anchors[:, :2] + anchors[:, 2:]) / 2, anchors[:, 2:] - anchors[:, :2]],
                         1) / scale
    torch.testing.assert_close(priors, ctr_size)
    # decoding all anchors: the same boxes as mmdet's coder (no clipping)
    loc = torch.randn(anchors.size(0), 4)
    boxes = ref.decode(loc, priors) * scale
    expected = model.bbox_head.bbox_coder.decode(anchors, loc)
    torch.testing.assert_close(boxes, expected, atol=1e-3, rtol=1e-5)
    # landmarks of all anchors: the same points as our landmark coder
    kpre = torch.randn(anchors.size(0), 10)
    kpts = ref.decode_landmarks(kpre, priors) * torch.tensor([w, h] * 5, dtype=torch.float32)
    expected = model.bbox_head.landmark_coder.decode(anchors, kpre).reshape(-1, 10)
    torch.testing.assert_close(kpts, expected, atol=1e-3, rtol=1e-5)
    # the +1-pixel greedy NMS
    dets = np.array([[0, 0, 9, 9, 0.9], [1, 1, 10, 10, 0.8], [20, 20, 29, 29, 0.7],
                     [0, 0, 9, 9, 0.1]], np.float32)
    assert ref.greedy_nms(dets, 0.5) == [0, 2]
    assert ref.greedy_nms(dets, 0.7) == [0, 1, 2]  # IoU(0, 1) = 81/119 with +1 areas


def test_pytorch_paths_agree(tmp_path):
    """The benchmark's ``pytorch`` path is the public FastFaceDetector (its own tests are in
    tests/test_apis/test_fast_detector.py); on the same optimised model it gives the detections
    of the generic mmdet flow (``pytorch_mmdet``)."""
    from projects.retinaface.apis import FastFaceDetector
    assert bm.FastFaceDetector is FastFaceDetector
    model, cfg = _model()
    bm.optimize_for_inference(model)
    assert model.backbone.stage1[0][1].__class__.__name__ == 'Identity'  # BN fused
    img = tmp_path / 'img.jpg'
    cv2.imwrite(str(img), _image(100, 150, seed=2))
    full = bm.MMDetPipelinePath(model, cfg)(str(img))
    for jit in (False, True):
        fast = FastFaceDetector.from_model(model, cfg, jit=jit)
        for _ in range(2 if jit else 1):
            lean = fast(str(img))
        assert len(lean['scores']) > 5
        np.testing.assert_allclose(lean['bboxes'].numpy(), full['bboxes'], atol=1e-3)
        np.testing.assert_allclose(lean['keypoints'].numpy(), full['keypoints'], atol=1e-3)
    # anchors are cached per input size: the same list object comes back
    gen = model.bbox_head.prior_generator
    a = gen.grid_priors([(4, 5), (2, 3), (1, 2)], device='cpu')
    assert gen.grid_priors([(4, 5), (2, 3), (1, 2)], device='cpu') is a
