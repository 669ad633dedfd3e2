"""LandmarkCoder, LandmarkAwareAssigner and OHEMNegativeMiner."""
import pytest
import torch
from mmdet.models.task_modules.assigners import AssignResult
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.structures import InstanceData

from projects.retinaface.models.task_modules import (
    LandmarkAwareAssigner,
    LandmarkCoder,
    OHEMNegativeMiner,
)

# ----------------------------------------------------------------------------- LandmarkCoder


def test_landmark_coder_hand_computed():
    coder = TASK_UTILS.build(dict(type='LandmarkCoder', num_keypoints=2, variance=0.1))
    assert isinstance(coder, LandmarkCoder)
    prior = torch.tensor([[0., 0., 20., 40.]])  # centre (10, 20), size (20, 40)
    kpts = torch.tensor([[[12., 16.], [0., 40.]]])
    deltas = coder.encode(kpts, prior)
    # (12 - 10) / (0.1 * 20) = 1; (16 - 20) / (0.1 * 40) = -1; (0 - 10) / 2 = -5; (40 - 20) / 4 = 5
    assert torch.allclose(deltas, torch.tensor([[1., -1., -5., 5.]]))
    assert torch.allclose(coder.decode(prior, deltas), kpts)


def test_landmark_coder_round_trip_batched():
    coder = LandmarkCoder(num_keypoints=5, variance=0.1)
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 7, 2, generator=g) * 100
    wh = torch.rand(2, 7, 2, generator=g) * 50 + 4
    priors = torch.cat([xy, xy + wh], dim=-1)
    kpts = torch.rand(2, 7, 5, 2, generator=g) * 150
    deltas = coder.encode(kpts, priors)
    assert deltas.shape == (2, 7, 10)
    # x then y for each point, like the reference layout
    ctr = (priors[..., :2] + priors[..., 2:]) / 2
    assert torch.allclose(deltas[..., 0], (kpts[..., 0, 0] - ctr[..., 0]) / (0.1 * wh[..., 0]))
    assert torch.allclose(deltas[..., 3], (kpts[..., 1, 1] - ctr[..., 1]) / (0.1 * wh[..., 1]))
    assert torch.allclose(coder.decode(priors, deltas), kpts, atol=1e-4)
    # box types work as priors
    flat = coder.encode(kpts[0], HorizontalBoxes(priors[0]))
    assert torch.allclose(flat, deltas[0])


def test_landmark_coder_3d_and_errors():
    coder = LandmarkCoder(num_keypoints=3, variance=0.1, num_dims=3)
    prior = torch.tensor([[10., 10., 30., 50.]])  # centre (20, 30), w 20, h 40
    pts = torch.tensor([[[20., 30., 0.], [22., 26., 8.], [0., 0., -4.]]])
    d = coder.encode(pts, prior).view(1, 3, 3)
    scale_z = 0.1 * (20 * 40)**0.5
    assert torch.allclose(d[0, 1], torch.tensor([1.0, -1.0, 8.0 / scale_z]))
    assert torch.allclose(coder.decode(prior, coder.encode(pts, prior)), pts, atol=1e-5)
    with pytest.raises(ValueError, match='keypoints must be'):
        coder.encode(torch.zeros(1, 5, 2), prior)
    with pytest.raises(ValueError, match='deltas must be'):
        coder.decode(prior, torch.zeros(1, 4))
    with pytest.raises(ValueError):
        LandmarkCoder(num_dims=4)


def test_box_coder_equals_reference_ssd_decoding():
    """DeltaXYWHBBoxCoder(stds 0.1/0.2) decodes like the reference ``decode(loc, priors)``."""
    coder = TASK_UTILS.build(
        dict(type='DeltaXYWHBBoxCoder', target_means=(0., 0., 0., 0.),
             target_stds=(0.1, 0.1, 0.2, 0.2)))
    g = torch.Generator().manual_seed(1)
    cxcy = torch.rand(20, 2, generator=g) * 200
    wh = torch.rand(20, 2, generator=g) * 60 + 8
    anchors = torch.cat([cxcy - wh / 2, cxcy + wh / 2], 1)
    loc = torch.randn(20, 4, generator=g)
    # reference: centre + loc[:2] * v0 * wh, wh * exp(loc[2:] * v1), then to corners
    ref_c = cxcy + loc[:, :2] * 0.1 * wh
    ref_wh = wh * torch.exp(loc[:, 2:] * 0.2)
    ref = torch.cat([ref_c - ref_wh / 2, ref_c + ref_wh / 2], 1)
    assert torch.allclose(coder.decode(anchors, loc), ref, atol=1e-3)


# ---------------------------------------------------------------------- LandmarkAwareAssigner


def _gt(with_kpts=True):
    gt = InstanceData()
    gt.bboxes = HorizontalBoxes(torch.tensor([[0., 0., 20., 20.], [50., 50., 90., 90.]]))
    gt.labels = torch.zeros(2, dtype=torch.long)
    if with_kpts:
        gt.keypoints = torch.arange(20.).view(2, 5, 2)
        gt.keypoints_valid = torch.tensor([[1., 1., 1., 1., 1.], [0., 0., 0., 0., 0.]])
    return gt


_PRIORS = torch.tensor([[0., 0., 20., 20.], [2., 0., 22., 20.], [50., 50., 90., 90.],
                        [200., 200., 220., 220.], [52., 52., 92., 92.]])
_MAXIOU = dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.2,
               ignore_iof_thr=0.5)


def test_landmark_aware_assigner_matches_wrapped_and_attaches_landmarks():
    assigner = TASK_UTILS.build(dict(type='LandmarkAwareAssigner', assigner=_MAXIOU))
    assert isinstance(assigner, LandmarkAwareAssigner)
    plain = TASK_UTILS.build(_MAXIOU)
    pred = InstanceData(priors=_PRIORS)
    gt = _gt()
    res = assigner.assign(pred, gt)
    ref = plain.assign(pred, gt)
    assert isinstance(res, AssignResult)
    assert torch.equal(res.gt_inds, ref.gt_inds)
    assert res.gt_inds.tolist() == [1, 1, 2, 0, 2]
    kp = res.get_extra_property('gt_keypoints')
    valid = res.get_extra_property('gt_keypoints_valid')
    # positives gather their own face's landmarks through gt_inds - 1
    pos = res.gt_inds > 0
    gathered = kp[res.gt_inds[pos] - 1]
    assert torch.equal(gathered[0], gt.keypoints[0])
    assert torch.equal(gathered[-1], gt.keypoints[1])
    assert valid[res.gt_inds[pos] - 1].sum(1).tolist() == [5., 5., 0., 0.]
    assert res.get_extra_property('gt_vertices') is None


def test_landmark_aware_assigner_without_keypoints_and_vertices():
    assigner = LandmarkAwareAssigner(assigner=_MAXIOU)
    gt = _gt(with_kpts=False)
    res = assigner.assign(InstanceData(priors=_PRIORS), gt)
    assert res.get_extra_property('gt_keypoints').shape == (2, 5, 2)
    assert res.get_extra_property('gt_keypoints_valid').sum() == 0
    gt = _gt()
    gt.vertices = torch.rand(2, 4, 3)
    gt.vertices_valid = torch.tensor([1., 0.])
    res = assigner.assign(InstanceData(priors=_PRIORS), gt)
    assert torch.equal(res.get_extra_property('gt_vertices'), gt.vertices)
    assert res.get_extra_property('gt_vertices_valid').tolist() == [1., 0.]
    gt.keypoints_valid = torch.ones(2, 4)
    with pytest.raises(ValueError, match='keypoints_valid'):
        assigner.assign(InstanceData(priors=_PRIORS), gt)


def test_landmark_aware_assigner_no_faces_and_ignore():
    assigner = LandmarkAwareAssigner(assigner=_MAXIOU)
    empty = InstanceData(bboxes=HorizontalBoxes(torch.zeros(0, 4)),
                         labels=torch.zeros(0, dtype=torch.long),
                         keypoints=torch.zeros(0, 5, 2), keypoints_valid=torch.zeros(0, 5))
    res = assigner.assign(InstanceData(priors=_PRIORS), empty)
    assert (res.gt_inds == 0).all()
    assert res.get_extra_property('gt_keypoints').shape == (0, 5, 2)
    # priors mostly inside an ignored face are neither positive nor negative
    ignore = InstanceData(bboxes=HorizontalBoxes(torch.tensor([[195., 195., 225., 225.]])))
    res = assigner.assign(InstanceData(priors=_PRIORS), _gt(), ignore)
    assert res.gt_inds.tolist() == [1, 1, 2, -1, 2]
    # ... also when the ignored face is the image's only face (mmdet's MaxIoUAssigner alone
    # would return every prior as background there and drop the ignore mask)
    plain = TASK_UTILS.build(_MAXIOU).assign(InstanceData(priors=_PRIORS), empty, ignore)
    assert plain.gt_inds.tolist() == [0, 0, 0, 0, 0]
    res = assigner.assign(InstanceData(priors=_PRIORS), empty, ignore)
    assert res.gt_inds.tolist() == [0, 0, 0, -1, 0]
    # without ignore_iof_thr nothing is ignored, as in the wrapped assigner
    no_thr = LandmarkAwareAssigner(assigner=dict(_MAXIOU, ignore_iof_thr=-1))
    assert no_thr.assign(InstanceData(priors=_PRIORS), empty, ignore).gt_inds.tolist() == [0] * 5


def test_landmark_aware_assigner_wraps_atss_by_keyword():
    assigner = LandmarkAwareAssigner(assigner=dict(type='ATSSAssigner', topk=4))
    gt = _gt()
    gt.bboxes = gt.bboxes.tensor  # DetDataPreprocessor hands tensors to the head
    res = assigner.assign(InstanceData(priors=_PRIORS), gt, num_level_priors=[5])
    ref = TASK_UTILS.build(dict(type='ATSSAssigner', topk=4)).assign(
        InstanceData(priors=_PRIORS), [5], gt)
    assert torch.equal(res.gt_inds, ref.gt_inds)
    assert res.gt_inds[0] == 1 and res.gt_inds[2] == 2
    assert res.get_extra_property('gt_keypoints').shape == (2, 5, 2)


# ------------------------------------------------------------------------------------ OHEM


def test_ohem_keeps_ratio_times_positives_hardest():
    miner = TASK_UTILS.build(dict(type='OHEMNegativeMiner', neg_pos_ratio=3))
    assert isinstance(miner, OHEMNegativeMiner)
    g = torch.Generator().manual_seed(0)
    n = 200
    losses = torch.rand(n, generator=g)
    pos = torch.zeros(n, dtype=torch.bool)
    pos[[3, 50, 77, 150]] = True
    ignored = torch.zeros(n, dtype=torch.bool)
    ignored[[10, 11, 12]] = True
    losses[[10, 11, 12]] = 10.0  # ignored priors must never be picked however hard
    neg = ~pos & ~ignored
    keep = miner.mine(losses, pos, neg)
    kept_neg = keep & neg
    assert (keep & pos).sum() == 4
    assert kept_neg.sum() == 12
    assert not (keep & ignored).any()
    # the kept negatives are exactly the 12 highest-loss negatives
    expected = losses.masked_fill(~neg, -1).topk(12).indices
    assert set(torch.nonzero(kept_neg).flatten().tolist()) == set(expected.tolist())
    assert losses[kept_neg].min() >= losses[neg & ~kept_neg].max()


def test_ohem_caps_and_no_positive_images():
    miner = OHEMNegativeMiner(neg_pos_ratio=3, min_neg=5)
    losses = torch.arange(10.)
    pos = torch.zeros(10, dtype=torch.bool)
    pos[:4] = True
    keep = miner.mine(losses, pos, ~pos)
    assert keep.all()  # 12 wanted, only 6 negatives: all of them
    none = torch.zeros(10, dtype=torch.bool)
    keep = miner.mine(losses, none, ~none)
    assert torch.nonzero(keep).flatten().tolist() == [5, 6, 7, 8, 9]
    keep = OHEMNegativeMiner(min_neg=0).mine(losses, none, ~none)
    assert not keep.any()
    assert OHEMNegativeMiner(neg_pos_ratio=2).num_negatives(7, 100) == 14
    with pytest.raises(ValueError, match='shape'):
        miner.mine(losses, pos[:5], ~pos)
