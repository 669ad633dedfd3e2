"""ONNX export (tools/deployment/pytorch2onnx.py), the ONNX Runtime inference path
(projects/retinaface/apis/onnx_inference.py) and INT8 quantisation (onnx_quantize.py)."""
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmcv.ops import nms as mmcv_nms
from mmdet.apis import inference_detector
from mmdet.registry import TASK_UTILS

from projects.retinaface.apis import build_test_pipeline
from projects.retinaface.apis import onnx_inference as oi
from tests.helpers import PYTHON, REPO_ROOT, load_script, requires_shared, shared_path

CONFIG = str(REPO_ROOT / 'configs' / 'retinaface_mnet025_fpn.py')


_load_tool = load_script


p2o = _load_tool('tools/deployment/pytorch2onnx.py', 'rf_pytorch2onnx')
oq = _load_tool('tools/deployment/onnx_quantize.py', 'rf_onnx_quantize')


def _random_model(score_thr=0.7):
    """Random weights (fixed seed); the classifier widened so that scores spread over (0, 1)
    (with the default init they all sit within 0.5 +- 0.003: near-ties everywhere)."""
    torch.manual_seed(0)
    model, cfg = p2o.build_model(CONFIG, None, {'model.test_cfg.score_thr': score_thr})
    for conv in model.bbox_head.cls_heads:
        torch.nn.init.normal_(conv.weight, std=20.0)
    for conv in model.bbox_head.reg_heads:
        torch.nn.init.normal_(conv.weight, std=0.05)
    return model.eval(), cfg


def _image(h, w, seed=0):
    """A smooth random colour image (uint8 BGR)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _match(ours, ref, tol=1e-3):
    """Every ONNX detection matches a PyTorch one (boxes, keypoints within tol, same scores);
    near-equal scores may be ordered differently."""
    rb = ref.bboxes.numpy()
    assert len(ours['scores']) == len(rb)
    for i, box in enumerate(ours['bboxes']):
        j = int(np.abs(rb - box).max(1).argmin())
        assert np.abs(rb[j] - box).max() < tol
        assert abs(float(ref.scores[j]) - float(ours['scores'][i])) < 1e-5
        np.testing.assert_allclose(ours['keypoints'][i], ref.keypoints[j].numpy(), atol=tol)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    model, cfg = _random_model()
    out = tmp_path_factory.mktemp('onnx')
    files = {}
    for decoded in (False, True):
        files[decoded] = p2o.export_onnx(model, cfg, str(out / f'm_{int(decoded)}.onnx'),
                                         shape=(64, 96), with_postprocess=decoded)
    return model, cfg, files


def test_metadata_and_dynamic_axes(exported):
    import onnx
    model, _, files = exported
    proto = onnx.load(files[False])
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 'height', 'width']
    assert [o.name for o in proto.graph.output] == list(oi.DELTA_OUTPUTS)
    meta = oi.read_metadata(files[False])
    head = model.bbox_head
    assert meta['outputs'] == 'deltas' and oi.read_metadata(files[True])['outputs'] == 'decoded'
    for lv, base, stride in zip(meta['levels'], head.prior_generator.base_anchors,
                                head.prior_generator.strides):
        np.testing.assert_array_equal(np.asarray(lv['base_anchors']), base.numpy())
        assert lv['stride'] == [float(stride[0]), float(stride[1])]
    assert meta['preprocess']['mean'] == [104.0, 117.0, 123.0]
    assert meta['preprocess']['pad_size_divisor'] == 32 and meta['preprocess']['resize'] is None
    assert meta['test_cfg']['score_thr'] == 0.7 and meta['test_cfg']['iou_threshold'] == 0.4
    assert meta['landmarks'] == dict(num_keypoints=5, variance=0.1)
    # 2-class softmax exported as sigmoid(face - background logit) from folded classifier
    # convs (A output channels); the user's model keeps its 2A-channel classifiers
    ops = {n.op_type for n in proto.graph.node}
    assert 'Softmax' not in ops and 'Sigmoid' in ops
    assert [c.out_channels for c in head.cls_heads] == [2 * head.num_base_priors] * 3


@pytest.mark.parametrize('decoded', [False, True])
def test_onnx_matches_pytorch_at_two_sizes(exported, decoded):
    model, cfg, files = exported
    det = oi.ONNXFaceDetector(files[decoded], num_threads=1)
    pipeline = build_test_pipeline(cfg)
    shapes = set()
    for h, w in [(150, 200), (250, 130)]:
        img = _image(h, w, seed=h)
        ours = det(img)
        ref = inference_detector(model, img, test_pipeline=pipeline).pred_instances
        assert len(ref.scores) > 5  # a real comparison, not two empty sets
        _match(ours, ref)
        shapes.add(det.preprocess(img)[0].shape)
    assert len(shapes) == 2  # two different network input sizes through one graph


def _random_cascade_model(score_thr=0.5):
    """The MobileNet config with the paper's two-stage CascadeRetinaFaceHead (random weights,
    spread classifier scores and visible stage-1 box refinements)."""
    torch.manual_seed(0)
    model, cfg = p2o.build_model(CONFIG, None, {
        'model.bbox_head.type': 'CascadeRetinaFaceHead',
        'model.train_cfg': None,
        'model.test_cfg.score_thr': score_thr})
    for stage in (model.bbox_head.stage1, model.bbox_head.stage2):
        for conv in stage.cls_heads:
            torch.nn.init.normal_(conv.weight, std=20.0)
        for conv in stage.reg_heads:
            torch.nn.init.normal_(conv.weight, std=0.05)
    for conv in model.bbox_head.stage1.reg_heads:  # refinements of ~0.1x the anchor size
        torch.nn.init.normal_(conv.bias, std=1.0)
    return model.eval(), cfg


@pytest.mark.parametrize('decoded', [False, True])
def test_cascade_head_matches_pytorch(tmp_path, decoded):
    """A two-stage cascade exports (stage-1 box deltas as a fourth output, or both decodings
    in the graph) and ONNXFaceDetector gives mmdet's detections: stage-2 scores, boxes and
    landmarks decoded from the stage-1 boxes of the kept anchors."""
    model, cfg = _random_cascade_model()
    onnx_file = p2o.export_onnx(model, cfg, str(tmp_path / 'cascade.onnx'), shape=(64, 96),
                                with_postprocess=decoded)
    meta = oi.read_metadata(onnx_file)
    assert meta['format_version'] == oi.CASCADE_METADATA_VERSION
    assert meta['prior_bbox_coder']['stds'] == [0.1, 0.1, 0.2, 0.2]
    det = oi.ONNXFaceDetector(onnx_file, num_threads=1)
    expected = ['scores', 'boxes', 'keypoints'] if decoded else [
        'scores', 'bbox_deltas', 'kpt_deltas', 'prior_deltas']
    assert [o.name for o in det.session.get_outputs()] == expected
    pipeline = build_test_pipeline(cfg)
    for h, w in [(150, 200), (250, 130)]:
        img = _image(h, w, seed=h)
        ref = inference_detector(model, img, test_pipeline=pipeline).pred_instances
        assert len(ref.scores) > 5
        _match(det(img), ref)
        if not decoded:  # the refinement is real: stage-1 deltas move the priors
            blob, _ = det.preprocess(img)
            assert np.abs(det.forward(blob)[3]).max() > 0.5
    assert p2o.verify_onnx(model, onnx_file, shapes=[(64, 96)])[0] < 1e-3


@pytest.mark.parametrize('decoded', [False, True])
def test_no_detection_and_tiny_images(exported, decoded, tmp_path):
    """Every image gets a result: empty arrays of the right shapes when no anchor passes the
    threshold (this raised on the landmark reshape), the same faces as PyTorch on images a
    few pixels large, and clear errors for missing or undecodable files."""
    model, cfg, files = exported
    none = oi.ONNXFaceDetector(files[decoded], score_thr=1.0, num_threads=1)(_image(64, 96))
    assert none['bboxes'].shape == (0, 4) and none['scores'].shape == (0, )
    assert none['labels'].shape == (0, ) and none['keypoints'].shape == (0, 5, 2)
    det = oi.ONNXFaceDetector(files[decoded], score_thr=0.0, num_threads=1)
    pipeline = build_test_pipeline(cfg)
    model.test_cfg.score_thr = 0.0
    try:
        for h, w in [(1, 1), (4, 1), (9, 12)]:
            img = _image(h, w, seed=w)[:h, :w]
            ref = inference_detector(model, img, test_pipeline=pipeline).pred_instances
            assert len(ref.scores) > 0
            _match(det(img), ref)
    finally:
        model.test_cfg.score_thr = 0.7
    with pytest.raises(FileNotFoundError, match='image not found'):
        det(str(tmp_path / 'missing.jpg'))
    (tmp_path / 'broken.jpg').write_bytes(b'not a jpeg')
    with pytest.raises(ValueError, match='cannot decode'):
        det(str(tmp_path / 'broken.jpg'))


def test_preprocess_one_pixel_wide_or_high_images():
    """OpenCV's bindings read a one-column plane of <= 4 rows as a scalar (a 1x1 image
    raised, a 4x1 one came out wrong): every size up to 8x8 gives the float32 formula."""
    pre = dict(mean=[104., 117., 123.], std=[1., 1., 1.], pad_size_divisor=32, pad_value=0)
    rng = np.random.default_rng(1)
    for h in range(1, 9):
        for w in range(1, 9):
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            expected = (img.astype(np.float32) - np.float32(pre['mean'])).transpose(2, 0, 1)
            for cache in (None, {}):
                blob, _ = oi.preprocess(img, pre, cache=cache)
                assert blob.shape == (1, 3, 32, 32)
                np.testing.assert_array_equal(blob[0, :, :h, :w], expected, err_msg=f'{h}x{w}')
                assert not blob[0, :, h:].any() and not blob[0, :, :, w:].any()


def test_anchors_and_coders_match_mmdet(exported):
    model, _, files = exported
    head = model.bbox_head
    meta = oi.read_metadata(files[False])
    sizes = oi.featmap_sizes((96, 160), meta['levels'])
    assert sizes == [(12, 20), (6, 10), (3, 5)]
    ours = oi.AnchorCache(meta['levels'])((96, 160))
    ref = torch.cat(head.prior_generator.grid_priors(sizes, device='cpu')).numpy()
    np.testing.assert_array_equal(ours, ref)

    rng = np.random.default_rng(0)
    deltas = rng.normal(0, 3, (ref.shape[0], 4)).astype(np.float32)  # large: hits the clamps
    coder = TASK_UTILS.build(dict(type='DeltaXYWHBBoxCoder', target_means=(0., 0., 0., 0.),
                                  target_stds=(0.1, 0.1, 0.2, 0.2)))
    expected = coder.decode(torch.from_numpy(ref), torch.from_numpy(deltas), max_shape=(90, 150))
    got = oi.decode_boxes(ours, deltas, meta['bbox_coder'], (90, 150))
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)
    assert got[:, 2].max() == 150 and got[:, 3].max() == 90  # clipped to the image
    kd = rng.normal(0, 1, (ref.shape[0], 10)).astype(np.float32)
    np.testing.assert_allclose(
        oi.decode_keypoints(ours, kd, 0.1),
        head.landmark_coder.decode(torch.from_numpy(ref), torch.from_numpy(kd)).numpy(),
        atol=1e-4)


@pytest.mark.parametrize('backend', ['numpy', 'cv2', 'sparse', 'auto'])
def test_nms_matches_mmcv(backend):
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 300, (400, 2))
    wh = rng.uniform(5, 60, (400, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.permutation(400).astype(np.float32) / 400 + 0.001  # no ties
    _, expected = mmcv_nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.4)
    keep = oi.nms(boxes, scores, 0.4, backend=backend)
    np.testing.assert_array_equal(keep, expected.numpy())
    assert 0 < len(keep) < 400
    np.testing.assert_array_equal(oi.nms(boxes, scores, 0.4, max_num=7, backend=backend),
                                  expected.numpy()[:7])
    with pytest.raises(ValueError, match='backend'):
        oi.nms(boxes, scores, 0.4, backend='gpu')


@pytest.mark.parametrize('backend', ['numpy', 'cv2', 'sparse', 'auto'])
def test_nms_max_num_prefix_is_exact(backend):
    """With max_num, NMS may stop after a prefix of the best candidates; the result must be
    the first max_num boxes of the full NMS, also when the first prefix keeps too few (heavy
    duplicates: the prefix has to grow) and with tied scores."""
    rng = np.random.default_rng(5)
    centres = rng.uniform(0, 500, (60, 2))
    xy = np.repeat(centres, 40, axis=0) + rng.normal(0, 1.5, (2400, 2))  # 40 near-copies each
    wh = np.repeat(rng.uniform(10, 40, (60, 2)), 40, axis=0)
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = np.round(rng.uniform(0.02, 1, 2400), 2).astype(np.float32)  # many ties
    # the full greedy NMS with ties kept in input order (test_nms_matches_mmcv checks the
    # rule against mmcv without ties: mmcv's order of tied scores is not defined)
    full = oi.nms_numpy(boxes, scores, 0.4)
    assert 25 < len(full) < 400
    assert len(oi.nms(boxes[:100], scores[:100], 0.4, max_num=50, backend=backend)) < 50
    for max_num in (5, 25, len(full), 1000):
        keep = oi.nms(boxes, scores, 0.4, max_num=max_num, backend=backend)
        np.testing.assert_array_equal(keep, full[:max_num])


def test_nms_auto_picks_backend_by_candidate_count(monkeypatch):
    """'auto' runs OpenCV's NMSBoxes up to AUTO_CV2_MAX_BOXES candidates, the sparse NMS above
    and for non-positive scores (which NMSBoxes drops); the boxes kept are the same."""
    limit = oi.AUTO_CV2_MAX_BOXES
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 2000, (limit + 1, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 80, (limit + 1, 2))], 1).astype(np.float32)
    scores = rng.uniform(0.02, 1, limit + 1).astype(np.float32)
    calls = []

    def spy(name):
        real = getattr(oi, name)

        def wrapped(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)
        return wrapped

    for name in ('_nms_cv2', 'nms_sparse'):
        monkeypatch.setattr(oi, name, spy(name))
    cases = [(limit, scores[:limit], '_nms_cv2'), (limit + 1, scores, 'nms_sparse'),
             (50, np.concatenate([[0.0], scores[1:50]]).astype(np.float32), 'nms_sparse')]
    for n, s, expected in cases:
        calls.clear()
        keep = oi.nms(boxes[:n], s, 0.4, backend='auto')
        assert calls == [expected], (n, calls)
        np.testing.assert_array_equal(keep, oi.nms_numpy(boxes[:n], s, 0.4))


def _boxes(rng, n, lo, hi, extent=600):
    xy = rng.uniform(0, extent, (n, 2))
    wh = np.exp(rng.uniform(np.log(lo), np.log(hi), (n, 2)))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


@pytest.mark.parametrize('thr', [0.3, 0.4, 0.5, 0.7])
def test_sparse_nms_equals_greedy_loop(thr):
    """The sparse NMS keeps exactly the boxes of the box-by-box greedy loop on hard sets:
    sizes from 1 to 500 px (one band-height for all), clusters of near-copies, nested boxes,
    exact duplicates with tied scores, zero / negative sizes, boxes far outside."""
    for seed in range(4):
        rng = np.random.default_rng(seed)
        spread = _boxes(rng, 700, 1, 500)
        centres = _boxes(rng, 40, 8, 120)
        copies = np.repeat(centres, 25, axis=0) + rng.normal(0, 2, (1000, 4)).astype(np.float32)
        nested = centres * np.float32(0.5) + np.float32(10)
        dupes = np.repeat(centres[:5], 3, axis=0)
        flat = _boxes(rng, 20, 5, 50)
        flat[:10, 2] = flat[:10, 0]  # zero width
        flat[10:, 3] = flat[10:, 1] - 5  # negative height
        far = _boxes(rng, 30, 10, 60) + np.float32(-5000)
        boxes = np.concatenate([spread, copies, nested, dupes, flat, far])
        scores = np.round(rng.uniform(0.02, 1, len(boxes)), 3).astype(np.float32)  # ties
        full = oi.nms_numpy(boxes, scores, thr)
        np.testing.assert_array_equal(oi.nms_sparse(boxes, scores, thr), full)
        np.testing.assert_array_equal(oi.nms(boxes, scores, thr, max_num=100), full[:100])
        assert 50 < len(full) < len(boxes)


def test_sparse_nms_long_chain_and_fallbacks():
    """A suppression chain longer than the 64 rounds (box k suppresses k + 1 only) is
    finished by the loop with the same result; NaN boxes and thresholds <= 0 use the loop."""
    n = 301
    x = np.arange(n, dtype=np.float32) * 4  # IoU(k, k+1) = 60 / 140, IoU(k, k+2) = 20 / 180
    boxes = np.stack([x, np.zeros(n), x + 10, np.full(n, 10)], 1).astype(np.float32)
    scores = np.linspace(1, 0.1, n).astype(np.float32)
    keep = oi.nms_sparse(boxes, scores, 0.4)
    np.testing.assert_array_equal(keep, np.arange(0, n, 2))  # every other box
    np.testing.assert_array_equal(keep, oi.nms_numpy(boxes, scores, 0.4))
    np.testing.assert_array_equal(oi.nms_sparse(boxes, scores, 0.4, max_num=9),
                                  np.arange(0, 18, 2))
    rng = np.random.default_rng(3)
    mixed = np.concatenate([boxes, _boxes(rng, 200, 5, 40)])
    mixed_scores = rng.permutation(len(mixed)).astype(np.float32) + 1
    np.testing.assert_array_equal(oi.nms_sparse(mixed, mixed_scores, 0.4),
                                  oi.nms_numpy(mixed, mixed_scores, 0.4))
    bad = boxes[:20].copy()
    bad[3] = np.nan
    np.testing.assert_array_equal(oi.nms_sparse(bad, scores[:20], 0.4),
                                  oi.nms_numpy(bad, scores[:20], 0.4))
    np.testing.assert_array_equal(oi.nms_sparse(boxes[:20], scores[:20], 0.0),
                                  oi.nms_numpy(boxes[:20], scores[:20], 0.0))
    assert oi.nms_sparse(np.zeros((0, 4)), np.zeros(0), 0.4).shape == (0, )


@pytest.mark.parametrize('hw', [(37, 53), (64, 96)])
def test_preprocess_normalise_matches_float32_formula(hw):
    """The OpenCV uint8 -> float32 path gives exactly ``(x - mean) / std`` in float32, also
    for non-integer means, BGR -> RGB, unpadded widths (strided destination) and pad values."""
    img = _image(*hw, seed=7)
    pre = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
               pad_size_divisor=32, pad_value=3.5)
    blob, meta = oi.preprocess(img, pre)
    h, w = hw
    assert blob.shape == (1, 3, -(-h // 32) * 32, -(-w // 32) * 32)
    rgb = img[:, :, ::-1].astype(np.float32)
    expected = (rgb - np.float32(pre['mean'])) / np.float32(pre['std'])
    np.testing.assert_array_equal(blob[0, :, :h, :w], expected.transpose(2, 0, 1))
    assert (blob[0, :, h:, :] == 3.5).all() and (blob[0, :, :, w:] == 3.5).all()
    # a reused buffer gives the same values
    again, _ = oi.preprocess(img, pre, out=blob)
    assert again is blob
    np.testing.assert_array_equal(again[0, :, :h, :w], expected.transpose(2, 0, 1))
    # reused scratch planes too, also after an image of another size
    cache = {}
    first, _ = oi.preprocess(img, pre, cache=cache)
    planes = {k: v for k, v in cache.items()}
    assert sorted(planes) == ['plane0', 'plane1', 'plane2']
    other = _image(h + 5, w + 3, seed=8)
    oi.preprocess(other, pre, cache=cache)
    second, _ = oi.preprocess(img, pre, cache=cache)
    np.testing.assert_array_equal(first, blob)
    np.testing.assert_array_equal(second, blob)
    assert all(cache[k].shape == (h, w) for k in planes)


def test_preprocess_matches_mmdet_resize_and_padding():
    from mmcv.transforms import Compose
    from mmdet.models.data_preprocessors import DetDataPreprocessor
    img = _image(70, 110, seed=3)
    dp = DetDataPreprocessor(mean=[104., 117., 123.], std=[1., 1., 1.], bgr_to_rgb=False,
                             pad_size_divisor=32)
    for resize in (dict(scale=[100, 60], keep_ratio=True), dict(scale=[90, 45],
                                                                  keep_ratio=False)):
        pipe = Compose([dict(type='mmdet.LoadImageFromNDArray'),
                        dict(type='mmdet.Resize', scale=tuple(resize['scale']),
                             keep_ratio=resize['keep_ratio']),
                        dict(type='mmdet.PackFaceInputs')])
        data = pipe(dict(img=img.copy()))
        ref = dp(dict(inputs=[data['inputs']], data_samples=[data['data_samples']]), False)
        pre = dict(resize=resize, mean=[104., 117., 123.], std=[1., 1., 1.], bgr_to_rgb=False,
                   pad_size_divisor=32, pad_value=0)
        blob, meta = oi.preprocess(img, pre)
        np.testing.assert_array_equal(blob, ref['inputs'].numpy())
        cache = {}
        for _ in range(2):  # the resized image and planes kept in scratch buffers
            np.testing.assert_array_equal(oi.preprocess(img, pre, cache=cache)[0], blob)
        assert cache['resized'].shape == (meta['img_shape'][0], meta['img_shape'][1], 3)
        sample = ref['data_samples'][0]
        assert meta['img_shape'] == tuple(sample.img_shape)
        np.testing.assert_allclose(meta['scale_factor'], sample.scale_factor)
    with pytest.raises(ValueError, match='BGR image'):
        oi.preprocess(img[..., 0], pre)
    with pytest.raises(ValueError, match='empty image'):
        oi.preprocess(img[:0], pre)


def test_pad_narrow_channels_keeps_outputs(tmp_path):
    """MobileNet-0.25's 8-channel Conv -> LeakyReLU -> depthwise -> LeakyReLU -> 1x1 chain is
    widened to 16 channels with zeros; the outputs stay the same; other layers, a chain
    whose tensor is also used elsewhere, and a second pass are left alone."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper
    model, cfg = _random_model()
    plain = p2o.export_onnx(model, cfg, str(tmp_path / 'plain.onnx'), shape=(64, 96),
                            pad_channels=0)
    proto = onnx.load(plain)
    assert p2o.pad_narrow_channels(proto, 8) == []  # already a multiple of 8
    widened = p2o.pad_narrow_channels(proto, 16)
    assert widened == ['/backbone/stage1/stage1.0/stage1.0.0/Conv']
    assert p2o.pad_narrow_channels(proto, 16) == []
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type == 'Conv']
    assert inits[convs[0].input[1]].shape == (16, 3, 3, 3)
    assert inits[convs[1].input[1]].shape == (16, 1, 3, 3)
    assert [a.i for a in convs[1].attribute if a.name == 'group'] == [16]
    assert inits[convs[2].input[1]].shape == (16, 16, 1, 1)
    assert not inits[convs[0].input[1]][8:].any() and not inits[convs[2].input[1]][:, 8:].any()
    padded = str(tmp_path / 'padded.onnx')
    onnx.save(proto, padded)
    x = np.random.default_rng(0).normal(0, 50, (1, 3, 96, 160)).astype(np.float32)
    outs = [ort.InferenceSession(f, providers=['CPUExecutionProvider']).run(None, {'input': x})
            for f in (plain, padded)]
    for a, b in zip(*outs):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    # a chain whose middle tensor is also a graph output is kept
    shared = onnx.load(plain)
    mid = next(n for n in shared.graph.node if n.op_type == 'LeakyRelu').output[0]
    shared.graph.output.append(onnx.helper.make_tensor_value_info(mid, onnx.TensorProto.FLOAT,
                                                                  None))
    assert p2o.pad_narrow_channels(shared, 16) == []


def test_pad_channels_default_follows_the_cpu(tmp_path, monkeypatch):
    """The export pads to ONNX Runtime's NCHWc block of the exporting CPU: 16 with AVX-512,
    nothing on AVX2 CPUs (8-channel blocks, which MobileNet-0.25's chain already fills)."""
    import onnx
    from onnx import numpy_helper
    info = tmp_path / 'cpuinfo'
    info.write_text('processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n')
    assert not p2o.cpu_has_avx512(str(info))
    info.write_text('processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw\n')
    assert p2o.cpu_has_avx512(str(info))
    assert not p2o.cpu_has_avx512(str(tmp_path / 'missing'))
    model, cfg = _random_model()
    widths = {}
    for avx512 in (False, True):
        monkeypatch.setattr(p2o, 'cpu_has_avx512', lambda avx512=avx512: avx512)
        assert p2o.default_pad_channels() == (16 if avx512 else 0)
        proto = onnx.load(p2o.export_onnx(model, cfg, str(tmp_path / f'{avx512}.onnx'),
                                          shape=(64, 96)))
        inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        first = next(n for n in proto.graph.node if n.op_type == 'Conv')
        widths[avx512] = inits[first.input[1]].shape[0]
    assert widths == {False: 8, True: 16}


def test_static_upsample_scales(tmp_path):
    """The neck's two nearest upsamplings get constant 2x scales: same outputs on padded
    inputs, no Shape op reads a feature map any more (only the input's batch size is read);
    sizes that do not give one integer factor leave the model alone."""
    import onnx
    import onnxruntime as ort
    model, cfg = _random_model()
    plain = p2o.export_onnx(model, cfg, str(tmp_path / 'plain.onnx'), shape=(64, 96),
                            static_upsample=False)
    proto = onnx.load(plain)
    read = {n.input[0] for n in proto.graph.node if n.op_type == 'Shape'}
    assert 'input' in read and len(read) == 5  # and the sizes of 4 neck feature maps
    # unpadded sizes: the factors are not integers (or differ), nothing changes
    assert p2o.static_upsample_scales(proto, [(70, 90), (90, 70)]) == 0
    assert proto == onnx.load(plain)
    assert p2o.static_upsample_scales(proto, [(64, 96), (96, 64)]) == 2
    assert p2o.static_upsample_scales(proto, [(64, 96), (96, 64)]) == 0  # nothing left
    resizes = [n for n in proto.graph.node if n.op_type == 'Resize']
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert [inits[n.input[2]].tolist() for n in resizes] == [[1, 1, 2, 2]] * 2
    assert [n.input for n in proto.graph.node if n.op_type == 'Shape'] == [['input']]
    static = str(tmp_path / 'static.onnx')
    onnx.save(proto, static)
    rng = np.random.default_rng(1)
    sessions = [ort.InferenceSession(f, providers=['CPUExecutionProvider'])
                for f in (plain, static)]
    for h, w in [(160, 96), (32, 224)]:
        x = rng.normal(0, 50, (1, 3, h, w)).astype(np.float32)
        for a, b in zip(*(s.run(None, {'input': x}) for s in sessions)):
            np.testing.assert_array_equal(a, b)
    # the exporter's default: the same graph (padded inputs are what the metadata asks for)
    default = onnx.load(p2o.export_onnx(model, cfg, str(tmp_path / 'default.onnx'),
                                        shape=(64, 96)))
    assert [n.input for n in default.graph.node if n.op_type == 'Shape'] == [['input']]
    # without onnxruntime (an optional requirement) the export still works, unchanged
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, 'onnxruntime', None)
        with pytest.warns(UserWarning, match='onnxruntime is not installed'):
            kept = onnx.load(p2o.export_onnx(model, cfg, str(tmp_path / 'no_ort.onnx'),
                                             shape=(64, 96)))
    assert len({n.input[0] for n in kept.graph.node if n.op_type == 'Shape'}) == 5
    # an unpadded input now fails loudly at the FPN addition
    with pytest.raises(Exception, match='Add'):
        sessions[1].run(None, {'input': np.zeros((1, 3, 72, 96), np.float32)})


def test_post_processor_selects_candidates_per_level(exported):
    """Score threshold then top-``nms_pre`` per level, for one class (the 1-D fast path) and
    for several classes, against a plain loop over levels."""
    _, _, files = exported
    meta = oi.read_metadata(files[False])
    post = oi.FacePostProcessor(meta, score_thr=0.3, nms_pre=7)
    pad = (96, 128)
    counts = [int(np.ceil(pad[0] / lv['stride'][1])) * int(np.ceil(pad[1] / lv['stride'][0]))
              * len(lv['base_anchors']) for lv in meta['levels']]
    rng = np.random.default_rng(0)
    scores = rng.random((sum(counts), 2)).astype(np.float32)

    def expected(s):
        out, start = [], 0
        for n in counts:
            rows, cols = np.nonzero(s[start:start + n] > 0.3)
            vals = s[start:start + n][rows, cols]
            sel = np.argsort(-vals, kind='stable')[:7] if rows.size > 7 else np.arange(rows.size)
            out += [(start + r, c, v) for r, c, v in zip(rows[sel], cols[sel], vals[sel])]
            start += n
        return out

    for s in (scores[:, :1], scores):
        rows, cols, kept = post._select(np.ascontiguousarray(s), pad)
        assert list(zip(rows.tolist(), cols.tolist(), kept.tolist())) == [
            (int(r), int(c), float(v)) for r, c, v in expected(s)]
        assert len(rows) == 7 * len(counts)


def test_cli_and_errors(tmp_path, capsys):
    out = tmp_path / 'cli.onnx'
    assert p2o.main([CONFIG, 'none', str(out), '--shape', '64', '64', '--verify']) == 0
    text = capsys.readouterr().out
    diffs = [float(v) for v in text.strip().splitlines()[-1].split(':')[-1].split(',')]
    assert len(diffs) == 2 and max(diffs) < 1e-3
    with pytest.raises(ValueError, match='shape'):
        p2o.export_onnx(*_random_model(), str(tmp_path / 'x.onnx'), shape=(0, 64))
    with pytest.raises(SystemExit, match='checkpoint not found'):
        p2o.main([CONFIG, str(tmp_path / 'missing.pth'), str(out)])
    with pytest.raises(FileNotFoundError):
        oi.ONNXFaceDetector(str(tmp_path / 'missing.onnx'))


def test_deployment_module_needs_no_torch_or_mmdet(exported, tmp_path):
    _, _, files = exported
    img_path = tmp_path / 'img.jpg'
    cv2.imwrite(str(img_path), _image(120, 160))
    code = (
        'import sys, importlib.util\n'
        'for m in ("torch", "mmdet", "mmcv", "mmengine"): sys.modules[m] = None\n'
        f'spec = importlib.util.spec_from_file_location("oi", {str(oi.__file__)!r})\n'
        'oi = importlib.util.module_from_spec(spec); spec.loader.exec_module(oi)\n'
        f'out = oi.ONNXFaceDetector({files[False]!r})({str(img_path)!r})\n'
        'print(len(out["scores"]), out["keypoints"].shape[1:])\n')
    res = subprocess.run([PYTHON, '-c', code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    n, shape = res.stdout.split(maxsplit=1)
    assert int(n) > 0 and shape.strip() == '(5, 2)'


def test_quantize_int8(exported, tmp_path, monkeypatch):
    import onnx
    _, _, files = exported
    monkeypatch.chdir(tmp_path)  # a relative --calib-dir (the calibrator changes directory)
    calib_dir = tmp_path / 'calib' / 'event'
    calib_dir.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(calib_dir / f'{i}.jpg'), _image(96 + 32 * i, 128, seed=10 + i))
    images = oq.list_images(str(tmp_path / 'calib'))
    calib, evaluation = oq.split_images(images, 2, 1)
    assert len(set(calib) | set(evaluation)) == 3
    out = str(tmp_path / 'int8.onnx')
    assert oq.main([files[False], out, '--calib-dir', 'calib', '--num-calib', '2']) == 0
    proto = onnx.load(out)
    ops = [n.op_type for n in proto.graph.node]
    assert 'QuantizeLinear' in ops and 'DequantizeLinear' in ops
    # the first 8 convs stay in float (default --float-first-convs 8), the next is INT8
    inits = {i.name for i in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type == 'Conv']
    assert all(c.input[1] in inits for c in convs[:8])
    dq_outputs = {n.output[0] for n in proto.graph.node if n.op_type == 'DequantizeLinear'}
    assert convs[8].input[1] in dq_outputs
    meta = oi.read_metadata(out)
    assert meta['quantization']['num_calib'] == 2 and meta['quantization']['per_channel']
    assert meta['quantization']['reduce_range'] == oq.default_reduce_range()
    props = {p.key: p.value for p in proto.metadata_props}
    assert sorted(__import__('json').loads(props['retinaface.calibration_images'])) == sorted(
        osp.relpath(p, tmp_path / 'calib') for p in calib)
    det = oi.ONNXFaceDetector(out)
    res = det(_image(100, 140))
    assert res['bboxes'].shape[1] == 4 and res['keypoints'].shape[1:] == (5, 2)
    with pytest.raises(ValueError, match='calibration'):
        oq.split_images(images, 3, 1)


def test_quantize_skips_unreadable_calibration_images(exported, tmp_path, capsys):
    """A corrupt file among the calibration images is skipped, counted and left out of the
    recorded list; with no readable image at all the quantiser stops with a clear error."""
    _, _, files = exported
    good = [tmp_path / f'{i}.jpg' for i in range(2)]
    for i, path in enumerate(good):
        cv2.imwrite(str(path), _image(96, 128, seed=20 + i))
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'not a jpeg')
    out = str(tmp_path / 'int8.onnx')
    info = oq.quantize(files[False], out, [str(good[0]), str(bad), str(good[1])],
                       method='MinMax', calib_root=str(tmp_path))
    assert info['num_calib'] == 2 and info['num_unreadable'] == 1
    err = capsys.readouterr().err
    assert '1 of 3 calibration images could not be read' in err
    assert 'calibration image 2/2: ' in err  # progress
    import onnx
    props = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert __import__('json').loads(props['retinaface.calibration_images']) == ['0.jpg', '1.jpg']
    with pytest.raises(ValueError, match='none of the calibration images'):
        oq.quantize(files[False], str(tmp_path / 'x.onnx'), [str(bad)])


def test_reduce_range_default_follows_vnni(tmp_path):
    """7-bit weights by default only on x86 CPUs without VNNI (saturating U8S8 kernels)."""
    info = tmp_path / 'cpuinfo'
    info.write_text('processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n')
    assert oi.cpu_flags(str(info)) == {'fpu', 'sse2', 'avx', 'avx2', 'fma'}
    assert oq.default_reduce_range(str(info))
    for vnni in oq.VNNI_FLAGS:
        info.write_text(f'processor\t: 0\nflags\t\t: fpu avx2 {vnni}\n')
        assert not oq.default_reduce_range(str(info))
    info.write_text('processor\t: 0\nFeatures\t: fp asimd\n')  # no x86 flags line
    assert oi.cpu_flags(str(info)) == frozenset() and not oq.default_reduce_range(str(info))
    assert not oq.default_reduce_range(str(tmp_path / 'missing'))
    assert oq.parse_args(['a', 'b', '--calib-dir', 'c']).reduce_range is None
    # the CPU's name for benchmark headers: the first processor's fields only
    info.write_text('processor\t: 0\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n'
                    'flags\t\t: fpu avx2\n\nprocessor\t: 1\nmodel name\t: other\n'
                    'flags\t\t: avx512f\n')
    assert oi.cpu_model_name(str(info)) == 'AMD EPYC (family 25 model 1)'
    assert oi.cpu_flags(str(info)) == {'fpu', 'avx2'}
    assert oi.cpu_model_name(str(tmp_path / 'missing')) == ''
    assert oq.parse_args(['a', 'b', '--calib-dir', 'c', '--no-reduce-range']).reduce_range is False


def test_quantize_falls_back_to_minmax_on_constant_tensors(exported, tmp_path, monkeypatch,
                                                           capsys):
    """onnxruntime's histogram calibration raises on a tensor that is constant over the
    calibration set; the tool then calibrates with MinMax, says so, and records it."""
    import onnxruntime.quantization as orq
    _, _, files = exported
    calib = tmp_path / 'calib'
    calib.mkdir()
    cv2.imwrite(str(calib / 'a.jpg'), _image(64, 96, seed=3))
    real = orq.quantize_static
    methods = []

    def flaky(*args, **kwargs):
        methods.append(kwargs['calibrate_method'])
        if kwargs['calibrate_method'] != orq.CalibrationMethod.MinMax:
            raise ValueError('Too many bins for data range. Cannot create 2048 finite-sized bins.')
        return real(*args, **kwargs)

    monkeypatch.setattr(orq, 'quantize_static', flaky)
    out = str(tmp_path / 'int8.onnx')
    qinfo = oq.quantize(files[False], out, [str(calib / 'a.jpg')], method='Percentile')
    assert methods == [orq.CalibrationMethod.Percentile, orq.CalibrationMethod.MinMax]
    assert qinfo['method'] == 'MinMax' and oi.read_metadata(out)['quantization'] == qinfo
    assert 'calibrating with MinMax instead' in capsys.readouterr().err
    monkeypatch.setattr(orq, 'quantize_static', lambda *a, **k: (_ for _ in ()).throw(
        ValueError('something else')))
    with pytest.raises(ValueError, match='something else'):  # other errors are not hidden
        oq.quantize(files[False], out, [str(calib / 'a.jpg')], method='Percentile')


WEIGHTS = ('weights', 'mobilenet0.25_Final.pth')


@requires_shared(*WEIGHTS)
@requires_shared('photos', 'group_img3.jpg')
def test_real_weights_onnx_matches_pytorch(tmp_path):
    conv = _load_tool('tools/model_converters/pytorch_retinaface_to_mmdet.py', 'rf_conv')
    src = torch.load(str(shared_path(*WEIGHTS)), map_location='cpu', weights_only=True)
    model, cfg = p2o.build_model(CONFIG, None)
    model.load_state_dict(conv.convert_state_dict(src, 'mnet'), strict=True)
    model.eval()
    onnx_file = p2o.export_onnx(model, cfg, str(tmp_path / 'real.onnx'))
    det = oi.ONNXFaceDetector(onnx_file, num_threads=1)
    photo = cv2.imread(str(shared_path('photos', 'group_img3.jpg')))
    pipeline = build_test_pipeline(cfg)
    for w, h in [(480, 320), (400, 560)]:
        img = cv2.resize(photo, (w, h))
        ours = det(img)
        ref = inference_detector(model, img, test_pipeline=pipeline).pred_instances
        assert int((ref.scores > 0.5).sum()) >= 5  # real faces found
        _match(ours, ref)
