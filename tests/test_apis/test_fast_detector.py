"""FastFaceDetector (projects/retinaface/apis/fast_detector.py): the detections of
``mmdet.apis.inference_detector`` with the same config, for random weights (saved into a
checkpoint) and the converted published MobileNet-0.25 weights (skipped without ../shared)."""
import argparse
import warnings

import cv2
import numpy as np
import pytest
import torch
from mmdet.apis import inference_detector, init_detector
from mmengine.config import Config

from projects.retinaface.apis import FastFaceDetector
from projects.retinaface.apis.fast_detector import optimize_for_inference, pipeline_resize
from tests.fixtures_weights import MNET_CONFIG, MNET_PTH, PHOTOS, converted_mnet_checkpoint
from tests.helpers import requires_shared, shared_path

# test-pipeline resizes: original size (the MobileNet config), fixed size, keep-ratio
RESIZES = {
    'original': None,
    'fixed': dict(type='Resize', scale=(128, 96), keep_ratio=False),
    'keep_ratio': dict(type='Resize', scale=(160, 120), keep_ratio=True),
}
SIZES = ((100, 150), (40, 90))  # (h, w) of the two test images


def _config(resize=None, score_thr=None):
    cfg = Config.fromfile(str(MNET_CONFIG))
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadFaceAnnotations')]
    if resize is not None:
        pipeline.append(dict(resize))
    pipeline.append(dict(type='PackFaceInputs'))
    cfg.test_dataloader.dataset.pipeline = pipeline
    if score_thr is not None:
        cfg.model.test_cfg.score_thr = score_thr
    return cfg


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _quiet_init(cfg, ckpt):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return init_detector(cfg, None if ckpt is None else str(ckpt), device='cpu')


@pytest.fixture(scope='module')
def random_ckpt(tmp_path_factory):
    """Random weights with non-trivial BatchNorm statistics (so that the Conv+BN fusion is
    exercised) and a sharpened classifier (a few confident, separated detections)."""
    torch.manual_seed(0)
    model = _quiet_init(_config(), None)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    for conv in model.bbox_head.cls_heads:
        torch.nn.init.normal_(conv.weight, std=20.0)
    path = tmp_path_factory.mktemp('fast_detector') / 'random.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, str(path))
    return path


def _assert_same(out, ref, atol=1e-3):
    assert len(out) == len(ref)
    torch.testing.assert_close(out.bboxes, ref.bboxes, rtol=0, atol=atol)
    torch.testing.assert_close(out.keypoints, ref.keypoints, rtol=0, atol=atol)
    torch.testing.assert_close(out.scores, ref.scores, rtol=0, atol=1e-4)
    assert torch.equal(out.labels, ref.labels)


@pytest.mark.parametrize('resize', list(RESIZES))
def test_matches_inference_detector(resize, random_ckpt, tmp_path):
    cfg = _config(RESIZES[resize], score_thr=0.7)
    ref_model = _quiet_init(cfg, random_ckpt)
    dets = {jit: FastFaceDetector(cfg, str(random_ckpt), jit=jit) for jit in (False, True)}
    for i, (h, w) in enumerate(SIZES):
        img = _image(h, w, seed=i)
        path = tmp_path / f'img{i}.png'
        cv2.imwrite(str(path), img)
        ref = inference_detector(ref_model, str(path)).pred_instances
        assert len(ref) >= 3, 'the test needs detections'
        for jit, det in dets.items():
            for inp in (str(path), path, img):
                for _ in range(2 if jit else 1):  # the first calls of a shape trace it
                    out = det(inp)
                assert out.keypoints.shape == (len(out), 5, 2)
                assert out.metainfo['ori_shape'] == (h, w)
                _assert_same(out, ref)
    # one trace per network input shape (a fixed-size resize gives one shape)
    assert len(dets[True]._traced) == (1 if resize == 'fixed' else 2)
    assert len(dets[False]._traced) == 0


def test_preprocess_and_jit_network_match_eager(random_ckpt):
    """The channels_last input is exactly the DetDataPreprocessor's (x - mean, zero padding to
    32), and the traced network gives the eager outputs within 1e-4 (relative for the large
    logits of the sharpened classifier) at two shapes."""
    cfg = _config()
    eager = FastFaceDetector(cfg, str(random_ckpt), jit=False)
    jit = FastFaceDetector(cfg, str(random_ckpt), jit=True)
    mean = torch.tensor([104., 117., 123.]).view(1, 3, 1, 1)
    for h, w in SIZES:
        img = _image(h, w, seed=4)
        x, meta = jit.preprocess(img)
        assert x.is_contiguous(memory_format=torch.channels_last)
        hp, wp = -(-h // 32) * 32, -(-w // 32) * 32
        assert tuple(x.shape) == (1, 3, hp, wp) and meta['pad_shape'] == (hp, wp)
        ref_x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None] - mean
        torch.testing.assert_close(x[:, :, :h, :w], ref_x, rtol=0, atol=0)
        assert (x[:, :, h:] == 0).all() and (x[:, :, :, w:] == 0).all()
        with torch.inference_mode():
            ref = eager.network(x.clone())
            for _ in range(3):
                out = jit.network(x)
        assert [o is None for o in out] == [o is None for o in ref]
        for a_list, b_list in zip(out, ref):
            for a, b in zip(a_list or [], b_list or []):
                assert a.shape == b.shape
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # the contiguous (NCHW) pre-processing gives the same input
    nchw = FastFaceDetector(cfg, str(random_ckpt), jit=False, channels_last=False)
    img = _image(*SIZES[0], seed=5)
    torch.testing.assert_close(nchw.preprocess(img)[0], jit.preprocess(img)[0], rtol=0, atol=0)


def test_options_inputs_and_errors(random_ckpt, tmp_path):
    cfg = _config(score_thr=0.7)
    img = _image(*SIZES[0], seed=0)
    det = FastFaceDetector(cfg, str(random_ckpt), jit=False, num_threads=1)
    assert torch.get_num_threads() == 1
    # BN fused into the convs, channels_last weights
    assert det.model.backbone.stage1[0][1].__class__.__name__ == 'Identity'
    assert det.model.bbox_head.cls_heads[0].weight.is_contiguous(
        memory_format=torch.channels_last)
    out = det(img)
    # score_thr overrides the config's: the results of the config with that threshold
    high = FastFaceDetector(cfg, str(random_ckpt), jit=False, score_thr=0.99)(img)
    assert 0 < len(high) < len(out) and bool((high.scores > 0.99).all())
    ref = inference_detector(_quiet_init(_config(score_thr=0.99), random_ckpt), img)
    _assert_same(high, ref.pred_instances)
    # a list gives one result per image; results are ordinary tensors (in-place ops work)
    both = det([img, img[:64, :90].copy()])
    assert len(both) == 2 and torch.equal(both[0].bboxes, out.bboxes)
    both[0].bboxes.add_(1)
    # from_model wraps (and fuses) an init_detector model
    wrapped = FastFaceDetector.from_model(_quiet_init(cfg, random_ckpt), jit=False)
    _assert_same(wrapped(img), out, atol=1e-5)

    with pytest.raises(FileNotFoundError, match='image not found'):
        det(str(tmp_path / 'missing.jpg'))
    (tmp_path / 'bad.jpg').write_bytes(b'not an image')
    with pytest.raises(ValueError, match='cannot decode'):
        det(str(tmp_path / 'bad.jpg'))
    with pytest.raises(ValueError, match='uint8'):
        det(img.astype(np.float32))
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        det(img[..., 0])
    with pytest.raises(TypeError, match='path or a numpy array'):
        det(torch.zeros(3, 10, 10))
    with pytest.raises(ValueError, match='score_thr'):
        FastFaceDetector(cfg, str(random_ckpt), score_thr=1.5)
    with pytest.raises(ValueError, match='num_threads'):
        FastFaceDetector(cfg, str(random_ckpt), num_threads=0)
    with pytest.raises(FileNotFoundError, match='checkpoint'):
        FastFaceDetector(cfg, str(tmp_path / 'missing.pth'))
    bad = _config(dict(type='RandomFlip', prob=0.5))
    with pytest.raises(ValueError, match='RandomFlip is not supported'):
        FastFaceDetector(bad, None)
    with pytest.raises(ValueError, match='fixed `scale`'):
        pipeline_resize(_config(dict(type='Resize', scale_factor=0.5)))
    assert pipeline_resize(_config(RESIZES['fixed'])) == dict(
        scale=(128, 96), keep_ratio=False, interpolation='bilinear')


def test_checkpoint_loads_through_safe_loading(random_ckpt, tmp_path):
    """Checkpoints load weights-only: a pickled arbitrary object is refused."""
    from projects.retinaface.utils.checkpoint_safety import UnsafeCheckpointError
    state = torch.load(str(random_ckpt), weights_only=True)
    state['meta'] = {'evil': argparse.Namespace(a=1)}
    path = tmp_path / 'unsafe.pth'
    torch.save(state, str(path))
    with pytest.raises(UnsafeCheckpointError):
        FastFaceDetector(_config(), str(path))


def test_optimize_for_inference_keeps_outputs(random_ckpt):
    cfg = _config()
    model = _quiet_init(cfg, random_ckpt)
    x = torch.from_numpy(_image(64, 96).astype(np.float32)).permute(2, 0, 1)[None] - 110
    with torch.no_grad():
        ref = model.bbox_head(model.extract_feat(x))
        optimize_for_inference(model)
        out = model.bbox_head(model.extract_feat(x.contiguous(memory_format=torch.channels_last)))
    for a_list, b_list in zip(out, ref):
        for a, b in zip(a_list or [], b_list or []):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- real weights (../shared)
@pytest.fixture(scope='module')
def mnet_ckpt(tmp_path_factory):
    return converted_mnet_checkpoint(tmp_path_factory)


@requires_shared(*MNET_PTH)
@requires_shared(*PHOTOS, 'group_t1.jpg')
def test_real_weights_match_inference_detector(mnet_ckpt, tmp_path):
    """Published MobileNet-0.25 weights on a photo of six faces at two sizes: the same faces,
    boxes and landmarks within 1e-3 px as inference_detector, from a path and an array, traced
    and eager."""
    src = cv2.imread(str(shared_path(*PHOTOS, 'group_t1.jpg')))
    ref_model = _quiet_init(str(MNET_CONFIG), mnet_ckpt)
    dets = {jit: FastFaceDetector(str(MNET_CONFIG), str(mnet_ckpt), jit=jit)
            for jit in (False, True)}
    for w, h in ((480, 360), (352, 288)):
        img = cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)
        path = tmp_path / f'photo_{w}x{h}.jpg'
        cv2.imwrite(str(path), img)
        ref = inference_detector(ref_model, str(path)).pred_instances
        assert int((ref.scores >= 0.5).sum()) >= 5, 'the photo shows six faces'
        for jit, det in dets.items():
            for inp in (str(path), cv2.imread(str(path))):
                for _ in range(2 if jit else 1):
                    out = det(inp)
                _assert_same(out, ref)
