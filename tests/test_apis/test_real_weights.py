"""The converted published MobileNet-0.25 weights: parity with the reference ONNX export and the
inference APIs (init_detector / inference_detector, FaceInferencer, DetInferencer, the demo).

Skipped without ``../shared`` (weights, photos) or without onnxruntime (parity tests only).
"""
import json
import subprocess

import mmcv
import numpy as np
import pytest
import torch
from mmdet.apis import DetInferencer, inference_detector, init_detector

from projects.retinaface.apis import FaceInferencer, build_test_pipeline
from tests.fixtures_weights import (
    MNET_CONFIG,
    MNET_FIXED640_CONFIG,
    MNET_ONNX,
    MNET_PTH,
    PHOTOS,
    converted_mnet_checkpoint,
    shared_photos,
)
from tests.helpers import PYTHON, REPO_ROOT, requires_shared, shared_path

pytestmark = [requires_shared(*MNET_PTH), requires_shared(*PHOTOS)]

PHOTO_NAMES = [p.name for p in shared_photos()] or ['(no photos)']
#: A photo of six people, all facing the camera (checked by eye): six faces above 0.5.
SIX_FACES = 'group_t1.jpg'
SCORE_THR = 0.5


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    return converted_mnet_checkpoint(tmp_path_factory)


@pytest.fixture(scope='module')
def model640(ckpt):
    return init_detector(str(MNET_FIXED640_CONFIG), str(ckpt), device='cpu')


@pytest.fixture(scope='module')
def ort_session():
    ort = pytest.importorskip('onnxruntime', reason='the parity tests need onnxruntime')
    path = shared_path(*MNET_ONNX)
    if not path.is_file():
        pytest.skip(f'needs the shared data file {path}')
    return ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])


# ---------------------------------------------------------------- reference decoding (numpy)
def reference_priors(height=640, width=640):
    """The reference PriorBox: (cx, cy, w, h) normalised, level-major, then row, column,
    anchor size."""
    priors = []
    for step, sizes in zip((8, 16, 32), ((16, 32), (64, 128), (256, 512))):
        fh, fw = int(np.ceil(height / step)), int(np.ceil(width / step))
        ys, xs = np.meshgrid(np.arange(fh), np.arange(fw), indexing='ij')
        cx = (xs.reshape(-1, 1) + 0.5) * step / width
        cy = (ys.reshape(-1, 1) + 0.5) * step / height
        for_sizes = [
            np.stack([cx[:, 0], cy[:, 0],
                      np.full(fh * fw, s / width),
                      np.full(fh * fw, s / height)], 1) for s in sizes
        ]
        priors.append(np.stack(for_sizes, 1).reshape(-1, 4))
    return np.concatenate(priors)


def nms(boxes, scores, thr):
    """Greedy NMS with continuous IoU (no +1 pixel); returns kept indices by score."""
    order = np.argsort(-scores, kind='stable')
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) -
                    np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        h = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) -
                    np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= thr]
    return np.array(keep, dtype=np.int64)


def decode_reference(loc, conf, landms, width, height, score_thr=0.02, nms_thr=0.4):
    """Detections in original pixels from the reference outputs of a 640x640 input of an image
    of ``width`` x ``height``: SSD decoding (variances 0.1 / 0.2), boxes clipped to the image
    (as mmdet's decoder does), score threshold, NMS."""
    p = reference_priors()
    boxes = np.concatenate([p[:, :2] + loc[:, :2] * 0.1 * p[:, 2:],
                            p[:, 2:] * np.exp(loc[:, 2:] * 0.2)], 1)
    boxes[:, :2] -= boxes[:, 2:] / 2
    boxes[:, 2:] += boxes[:, :2]
    boxes = np.clip(boxes, 0, 1) * np.array([width, height, width, height])
    pts = (p[:, None, :2] + landms.reshape(-1, 5, 2) * 0.1 * p[:, None, 2:]) * np.array(
        [width, height])
    scores = conf[:, 1]
    idx = np.nonzero(scores > score_thr)[0]
    keep = idx[nms(boxes[idx], scores[idx], nms_thr)]
    return boxes[keep], scores[keep], pts[keep]


def iou_matrix(a, b):
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area_a = np.prod(a[:, 2:] - a[:, :2], -1)
    area_b = np.prod(b[:, 2:] - b[:, :2], -1)
    return inter / (area_a[:, None] + area_b[None] - inter)


def flat_outputs(cls_scores, bbox_preds, kpt_preds):
    """Our per-level head maps -> the reference's flat anchor order and conventions."""

    def flat(preds, dim):
        return torch.cat([p.permute(0, 2, 3, 1).reshape(p.size(0), -1, dim) for p in preds], 1)

    # ours [face, bg] per anchor -> reference [bg, face], softmaxed
    conf = flat(cls_scores, 2)[..., [1, 0]].softmax(-1)
    return flat(bbox_preds, 4), conf, flat(kpt_preds, 10)


def preprocess(model, photo):
    """The 640x640 network input of ``photo`` as the model sees it (test pipeline +
    data_preprocessor)."""
    pipeline = build_test_pipeline(model.cfg)
    data = pipeline(str(photo))
    batch = model.data_preprocessor(
        dict(inputs=[data['inputs']], data_samples=[data['data_samples']]), False)
    return batch['inputs']


# ------------------------------------------------------------------------------------ parity
@pytest.mark.parametrize('name', PHOTO_NAMES)
def test_raw_outputs_match_onnx(model640, ort_session, name):
    photo = shared_path(*PHOTOS, name)
    x = preprocess(model640, photo)
    assert tuple(x.shape) == (1, 3, 640, 640)
    # the input convention of the reference: BGR minus (104, 117, 123), bilinear resize
    img = mmcv.imresize(mmcv.imread(str(photo)), (640, 640)).astype(np.float32)
    expected = torch.from_numpy(img - np.array([104, 117, 123], np.float32)).permute(2, 0, 1)
    torch.testing.assert_close(x[0], expected, rtol=0, atol=0)

    with torch.no_grad():
        cls_scores, bbox_preds, kpt_preds, _ = model640.bbox_head(model640.extract_feat(x))
    loc, conf, landms = (t[0].numpy() for t in flat_outputs(cls_scores, bbox_preds, kpt_preds))
    ref_loc, ref_conf, ref_landms = (o[0] for o in ort_session.run(None, {'input0': x.numpy()}))
    assert loc.shape == ref_loc.shape == (16800, 4)
    assert conf.shape == ref_conf.shape == (16800, 2)
    assert landms.shape == ref_landms.shape == (16800, 10)
    diffs = {n: float(np.abs(a - b).max()) for n, a, b in
             (('loc', loc, ref_loc), ('conf', conf, ref_conf), ('landms', landms, ref_landms))}
    assert max(diffs.values()) < 1e-4, diffs
    assert (ref_conf[:, 1] > SCORE_THR).sum() > 0  # the photo does contain faces


@pytest.mark.parametrize('name', PHOTO_NAMES)
def test_detections_match_reference_decoding(model640, ort_session, name):
    photo = shared_path(*PHOTOS, name)
    height, width = mmcv.imread(str(photo)).shape[:2]
    x = preprocess(model640, photo)
    outs = [o[0] for o in ort_session.run(None, {'input0': x.numpy()})]
    ref_boxes, ref_scores, ref_pts = decode_reference(*outs, width, height)

    pred = inference_detector(model640, str(photo)).pred_instances
    keep = (pred.scores > SCORE_THR).numpy()
    boxes, scores = pred.bboxes.numpy()[keep], pred.scores.numpy()[keep]
    pts = pred.keypoints.numpy()[keep]
    ref_keep = ref_scores > SCORE_THR
    ref_boxes, ref_scores, ref_pts = ref_boxes[ref_keep], ref_scores[ref_keep], ref_pts[ref_keep]

    assert len(boxes) == len(ref_boxes) > 0
    iou = iou_matrix(boxes, ref_boxes)
    match = iou.argmax(1)
    assert len(set(match.tolist())) == len(boxes)  # one-to-one
    assert iou[np.arange(len(boxes)), match].min() > 0.999
    np.testing.assert_allclose(scores, ref_scores[match], atol=1e-4)
    assert np.abs(pts - ref_pts[match]).max() < 0.1  # pixels


# ---------------------------------------------------------------------------------- the APIs
def _assert_landmarks_in_boxes(boxes, keypoints):
    """Every landmark inside its box grown by a quarter of its size on each side."""
    boxes, keypoints = np.asarray(boxes), np.asarray(keypoints)
    assert keypoints.shape == (len(boxes), 5, 2)
    wh = boxes[:, 2:] - boxes[:, :2]
    lo = boxes[:, None, :2] - 0.25 * wh[:, None]
    hi = boxes[:, None, 2:] + 0.25 * wh[:, None]
    assert ((keypoints >= lo) & (keypoints <= hi)).all()
    # left eye left of right eye, eyes above the mouth corners (upright photos)
    assert (keypoints[:, 0, 0] < keypoints[:, 1, 0]).all()
    assert (keypoints[:, :2, 1].mean(1) < keypoints[:, 3:, 1].mean(1)).all()


def test_init_detector_keypoints_in_original_pixels(ckpt, model640):
    photo = str(shared_path(*PHOTOS, SIX_FACES))
    height, width = mmcv.imread(photo).shape[:2]
    model = init_detector(str(MNET_CONFIG), str(ckpt), device='cpu')  # original-size test
    assert model.dataset_meta['classes'] == ('face', )
    pred = inference_detector(model, photo).pred_instances
    assert pred.keypoints.shape == (len(pred.bboxes), 5, 2)
    keep = pred.scores > SCORE_THR
    boxes, pts = pred.bboxes[keep].numpy(), pred.keypoints[keep].numpy()
    assert len(boxes) == 6
    _assert_landmarks_in_boxes(boxes, pts)
    assert (pts[..., 0] >= 0).all() and (pts[..., 0] <= width).all()
    assert (pts[..., 1] >= 0).all() and (pts[..., 1] <= height).all()

    # the 640x640 model sees the same six faces; rescaled, they land on the same pixels
    pred640 = inference_detector(model640, photo).pred_instances
    keep640 = pred640.scores > SCORE_THR
    boxes640, pts640 = pred640.bboxes[keep640].numpy(), pred640.keypoints[keep640].numpy()
    iou = iou_matrix(boxes, boxes640)
    match = iou.argmax(1)
    assert len(boxes640) == 6 and len(set(match.tolist())) == 6
    assert iou.max(1).min() > 0.7
    eye_dist = np.linalg.norm(pts[:, 0] - pts[:, 1], axis=-1)
    assert (np.linalg.norm(pts - pts640[match], axis=-1).max(1) < 0.5 * eye_dist).all()


def _read_pred(out_dir, name):
    with open(out_dir / 'preds' / (name.rsplit('.', 1)[0] + '.json')) as f:
        return json.load(f)


def test_face_inferencer_and_det_inferencer_json(ckpt, tmp_path):
    photo = str(shared_path(*PHOTOS, SIX_FACES))
    results = {}
    for name, cls in (('face', FaceInferencer), ('det', DetInferencer)):
        inferencer = cls(model=str(MNET_CONFIG), weights=str(ckpt), device='cpu',
                         show_progress=False)
        out_dir = tmp_path / name
        out = inferencer(photo, out_dir=str(out_dir), no_save_pred=False, no_save_vis=True,
                         pred_score_thr=SCORE_THR)
        pred = out['predictions'][0]
        saved = _read_pred(out_dir, SIX_FACES)
        assert saved == json.loads(json.dumps(pred))
        assert len(pred['keypoints']) == len(pred['bboxes']) == len(pred['scores'])
        scores = np.array(pred['scores'])
        keep = scores > SCORE_THR
        assert keep.sum() == 6
        _assert_landmarks_in_boxes(np.array(pred['bboxes'])[keep],
                                   np.array(pred['keypoints'])[keep])
        results[name] = pred
    np.testing.assert_allclose(results['face']['keypoints'], results['det']['keypoints'],
                               atol=1e-4)


def test_image_demo_writes_annotated_image_and_json(ckpt, tmp_path):
    photo = shared_path(*PHOTOS, SIX_FACES)
    out_dir = tmp_path / 'out'
    cmd = [PYTHON, str(REPO_ROOT / 'demo' / 'image_demo.py'), str(photo), str(MNET_CONFIG),
           '--weights', str(ckpt), '--device', 'cpu', '--out-dir', str(out_dir),
           '--pred-score-thr', str(SCORE_THR)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    vis = mmcv.imread(str(out_dir / 'vis' / SIX_FACES))
    original = mmcv.imread(str(photo))
    assert vis.shape == original.shape
    pred = _read_pred(out_dir, SIX_FACES)
    boxes = np.array(pred['bboxes'])[np.array(pred['scores']) > SCORE_THR]
    assert len(boxes) == 6
    # drawing changed the pixels around every face and left a far-away corner alone
    diff = np.abs(vis.astype(np.int16) - original.astype(np.int16)).max(-1)
    for x1, y1, x2, y2 in boxes.round().astype(int):
        assert diff[max(y1 - 3, 0):y2 + 4, max(x1 - 3, 0):x2 + 4].max() > 50
    assert diff[-20:, -20:].max() < 30  # only JPEG noise there
    assert len(pred['keypoints']) == len(pred['bboxes'])

