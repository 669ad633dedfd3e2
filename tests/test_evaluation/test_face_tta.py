"""FaceTTAModel: un-flipping, box voting with landmarks, NMS, and the config pipeline."""
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from torch import nn

from projects.retinaface.models.test_time_augs import box_vote, flip_keypoints
from tests.helpers import load_config

W, H = 100, 80
# A face in the original image: box and five points (left eye, right eye, nose, left mouth,
# right mouth; "left" = smaller x here).
BOX = np.array([10., 20, 40, 60])
KPTS = np.array([[18., 30], [32, 30], [25, 40], [19, 50], [31, 50]])


def _mirror(box, kpts):
    """What a detector sees in the horizontally flipped image: x -> W - x, and the point
    that is the left eye there is the mirror of the original right eye (and so on)."""
    b = np.array([W - box[2], box[1], W - box[0], box[3]])
    k = kpts.copy()
    k[:, 0] = W - k[:, 0]
    return b, k[[1, 0, 2, 4, 3]]


def _sample(boxes, scores, kpts, flip, scale=1.):
    s = DetDataSample(metainfo=dict(img_id='e/x', img_path='e/x.jpg', ori_shape=(H, W),
                                    img_shape=(int(H * scale), int(W * scale)),
                                    scale_factor=(scale, scale), flip=flip,
                                    flip_direction='horizontal' if flip else None))
    s.pred_instances = InstanceData(
        bboxes=torch.tensor(np.asarray(boxes).reshape(-1, 4), dtype=torch.float32),
        scores=torch.tensor(scores, dtype=torch.float32),
        labels=torch.zeros(len(scores), dtype=torch.long),
        keypoints=torch.tensor(np.asarray(kpts).reshape(-1, 5, 2), dtype=torch.float32))
    return s


class _Dummy(nn.Module):
    """A 'detector' whose test_step returns preset predictions per view."""

    def __init__(self, views=None):
        super().__init__()
        self.views = views or {}

    def test_step(self, data):
        return [self.views[(s.metainfo['flip'], s.metainfo['scale_factor'][0])]
                for s in data['data_samples']]


def _tta(merge='vote', module=None, **cfg):
    return MODELS.build(dict(type='FaceTTAModel', module=module or _Dummy(),
                             tta_cfg=dict(merge=merge, iou_thr=0.4, max_per_img=100, **cfg)))


def test_flip_keypoints_undoes_mirror():
    b, k = _mirror(BOX, KPTS)
    back = flip_keypoints(torch.tensor(k[None]), W)[0].numpy()
    np.testing.assert_array_equal(back, KPTS)
    assert b.tolist() == [60, 20, 90, 60]


def test_vote_merges_original_and_flipped_view():
    # original view: the face (score .9); flipped view: the face shifted by +2 px (every box
    # coordinate and point) and a false positive at (70,0)-(80,10) in the flipped frame.
    # Un-flipped, the shifted face has IoU 28*38 / (2*1200 - 1064) = .796 >= .4 with the
    # first: one cluster, weights .9 and .6 -> box and points + .6 * 2 / 1.5 = + 0.8, score .9.
    # The false positive un-flips to (20,0)-(30,10), no overlap: its own cluster, score .3.
    fb, fk = _mirror(BOX + 2, KPTS + 2)
    fp_box = np.array([70., 0, 80, 10])
    views = [_sample(BOX, [.9], KPTS, flip=False),
             _sample(np.stack([fb, fp_box]), [.6, .3], np.stack([fk, fk]), flip=True)]
    merged = _tta('vote').merge_preds([views])[0]
    assert merged.metainfo['flip'] is False  # the non-flipped view carries the result
    p = merged.pred_instances
    np.testing.assert_allclose(p.bboxes.numpy(), [BOX + 0.8, [20, 0, 30, 10]], atol=1e-5)
    np.testing.assert_allclose(p.scores.numpy(), [.9, .3], atol=1e-7)
    np.testing.assert_allclose(p.keypoints[0].numpy(), KPTS + 0.8, atol=1e-5)
    # the left eye stays left of the right eye, mouth corners likewise
    assert p.keypoints[0, 0, 0] < p.keypoints[0, 1, 0]
    assert p.keypoints[0, 3, 0] < p.keypoints[0, 4, 0]
    assert p.keypoints.shape == (2, 5, 2)


def test_nms_keeps_the_best_box_and_its_landmarks():
    fb, fk = _mirror(BOX + 2, KPTS + 2)
    views = [_sample(fb, [.95], fk, flip=True), _sample(BOX, [.9], KPTS, flip=False)]
    p = _tta('nms').merge_preds([views])[0].pred_instances
    # the flipped view's face has the higher score: kept, un-flipped (+2), landmarks reordered
    np.testing.assert_allclose(p.bboxes.numpy(), [BOX + 2], atol=1e-5)
    np.testing.assert_allclose(p.keypoints.numpy(), [KPTS + 2], atol=1e-5)
    np.testing.assert_allclose(p.scores.numpy(), [.95], atol=1e-7)


def test_test_step_end_to_end_over_flips_and_scales():
    # four views (2 scales x flip) all predicting the true face (in their frames, original
    # pixels) with different scores: voting returns exactly the face and its landmarks.
    fb, fk = _mirror(BOX, KPTS)
    views = {(False, 1.): _sample(BOX, [.9], KPTS, False),
             (True, 1.): _sample(fb, [.8], fk, True),
             (False, 2.): _sample(BOX, [.7], KPTS, False, 2.),
             (True, 2.): _sample(fb, [.6], fk, True, 2.)}
    tta = _tta('vote', module=_Dummy(views))
    order = [(True, 1.), (False, 1.), (True, 2.), (False, 2.)]
    data = dict(inputs=[[torch.zeros(3, 8, 8)] for _ in order],
                data_samples=[[views[k]] for k in order])
    out = tta.test_step(data)
    assert len(out) == 1
    p = out[0].pred_instances
    np.testing.assert_allclose(p.bboxes.numpy(), [BOX], atol=1e-5)
    np.testing.assert_allclose(p.keypoints.numpy(), [KPTS], atol=1e-5)
    assert p.scores.tolist() == pytest.approx([.9])


def test_box_vote_weights_validity_and_limits():
    boxes = np.array([[0., 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]])
    scores = np.array([.9, .3, .8, .1])
    labels = np.zeros(4, dtype=np.int64)
    kpts = np.stack([np.full((5, 2), v) for v in (1., 5., 9., 100.)])
    valid = np.ones((4, 5), bool)
    valid[1, 0] = False  # box 1's first point is not a landmark: only boxes 0 and 3 vote there
    b, s, lab, k, members = box_vote(boxes, scores, labels, kpts, valid, iou_thr=0.4)
    # cluster of box 0: boxes 0 (.9), 1 (.3, IoU 81/119 = .68), 3 (.1, identical)
    np.testing.assert_allclose(b[0], (.9 * boxes[0] + .3 * boxes[1] + .1 * boxes[3]) / 1.3)
    np.testing.assert_allclose(k[0, 1], (.9 * 1 + .3 * 5 + .1 * 100) / 1.3)
    np.testing.assert_allclose(k[0, 0], (.9 * 1 + .1 * 100) / 1.0)
    assert s.tolist() == [.9, .8] and sorted(members[0].tolist()) == [0, 1, 3]
    np.testing.assert_allclose(b[1], boxes[2])
    # min_votes drops the singleton cluster, max_num caps the output
    assert box_vote(boxes, scores, labels, iou_thr=0.4, min_votes=2)[0].shape == (1, 4)
    assert box_vote(boxes, scores, labels, iou_thr=0.4, max_num=1)[0].shape == (1, 4)
    # different labels never merge
    b2 = box_vote(boxes, scores, np.array([0, 1, 0, 0]), iou_thr=0.4)[0]
    assert b2.shape == (3, 4)


def test_empty_views_and_bad_config():
    empty = _sample(np.zeros((0, 4)), [], np.zeros((0, 5, 2)), flip=False)
    empty_f = _sample(np.zeros((0, 4)), [], np.zeros((0, 5, 2)), flip=True)
    p = _tta('vote').merge_preds([[empty_f, empty]])[0].pred_instances
    assert p.bboxes.shape == (0, 4) and p.keypoints.shape == (0, 5, 2)
    with pytest.raises(ValueError, match='merge'):
        _tta('wbf')
    with pytest.raises(ValueError, match='unknown tta_cfg'):
        MODELS.build(dict(type='FaceTTAModel', module=_Dummy(), tta_cfg=dict(nms=0.5)))


def test_tta_config_resizes_short_side():
    from mmdet.datasets.transforms import Resize
    cfg = load_config('configs/_base_/tta/face_tta.py')
    assert cfg.tta_model.type == 'FaceTTAModel' and cfg.tta_model.tta_cfg.iou_thr == 0.4
    tta = [t for t in cfg.tta_pipeline if t['type'] == 'TestTimeAug'][0]
    resizes = tta['transforms'][0]
    assert [r['scale'][0] for r in resizes] == [500, 800, 1100, 1400, 1700]
    out = Resize(**{k: v for k, v in resizes[0].items() if k != 'type'})(
        dict(img=np.zeros((200, 300, 3), np.uint8)))
    assert out['img'].shape[:2] == (500, 750)
    assert [f['prob'] for f in tta['transforms'][1]] == [1., 0.]
