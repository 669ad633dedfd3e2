"""RetinaFaceHead and CascadeRetinaFaceHead: shapes, losses, targets, OHEM, predictions."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures.bbox import HorizontalBoxes, bbox_overlaps
from mmengine.model import bias_init_with_prob
from mmengine.structures import InstanceData

from projects.retinaface.models.dense_heads import CascadeRetinaFaceHead, RetinaFaceHead

IMG = 128
STRIDES = (8, 16, 32)
IN_CH = 8

TRAIN_CFG = dict(
    assigner=dict(
        type='LandmarkAwareAssigner',
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.35, neg_iou_thr=0.35,
                      min_pos_iou=0.2, match_low_quality=True, gt_max_assign_all=False,
                      ignore_iof_thr=0.5)),
    ohem=dict(type='OHEMNegativeMiner', neg_pos_ratio=3, min_neg=16),
    allowed_border=-1,
    pos_weight=-1)
TEST_CFG = dict(nms_pre=1000, score_thr=0.5, nms=dict(type='nms', iou_threshold=0.4),
                max_per_img=100)


def make_head(**kw):
    cfg = dict(type='RetinaFaceHead', num_classes=1, in_channels=IN_CH, shared_head=False,
               stacked_convs=0, train_cfg=copy.deepcopy(TRAIN_CFG),
               test_cfg=copy.deepcopy(TEST_CFG))
    cfg.update(kw)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def feats(batch=1, seed=0, channels=IN_CH):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, channels, IMG // s, IMG // s, generator=g).requires_grad_()
            for s in STRIDES]


def meta(scale_factor=(1.0, 1.0)):
    return dict(img_shape=(IMG, IMG), pad_shape=(IMG, IMG), ori_shape=(IMG, IMG),
                scale_factor=scale_factor, batch_input_shape=(IMG, IMG))


FACE_BOXES = torch.tensor([[20., 24., 52., 60.], [66., 60., 110., 104.]])


def faces(landmarks=True, keypoints_field=True):
    gt = InstanceData()
    gt.bboxes = HorizontalBoxes(FACE_BOXES.clone())
    gt.labels = torch.zeros(2, dtype=torch.long)
    if keypoints_field:
        # distinct landmark sets inside each face
        base = torch.tensor([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])
        wh = FACE_BOXES[:, 2:] - FACE_BOXES[:, :2]
        gt.keypoints = FACE_BOXES[:, None, :2] + base[None] * wh[:, None]
        gt.keypoints_valid = torch.full((2, 5), 1.0 if landmarks else 0.0)
    return gt


def no_faces():
    return InstanceData(bboxes=HorizontalBoxes(torch.zeros(0, 4)),
                        labels=torch.zeros(0, dtype=torch.long),
                        keypoints=torch.zeros(0, 5, 2), keypoints_valid=torch.zeros(0, 5))


def flat_anchors(head):
    return torch.cat(head.prior_generator.grid_priors([(IMG // s, IMG // s) for s in STRIDES],
                                                     device='cpu'))


# ------------------------------------------------------------------------------ structure


def test_reference_layout_keys_and_shapes():
    head = make_head()
    assert isinstance(head, RetinaFaceHead)
    keys = set(head.state_dict().keys())
    expected = {f'{name}.{i}.{p}' for name in ('cls_heads', 'reg_heads', 'kpt_heads')
                for i in range(3) for p in ('weight', 'bias')}
    assert keys == expected
    assert head.cls_heads[0].weight.shape == (2 * 2, IN_CH, 1, 1)  # 2 anchors x [face, bg]
    assert head.kpt_heads[2].weight.shape == (2 * 10, IN_CH, 1, 1)
    cls, box, kpt, vert = head(feats(batch=2))
    assert vert is None
    for lvl, s in enumerate(STRIDES):
        hw = (IMG // s, IMG // s)
        assert cls[lvl].shape == (2, 4, *hw)
        assert box[lvl].shape == (2, 8, *hw)
        assert kpt[lvl].shape == (2, 20, *hw)
    with pytest.raises(ValueError, match='feature levels'):
        head(feats()[:2])


def test_mmdet_layout_shared_towers_and_sigmoid_init():
    head = make_head(stacked_convs=2, feat_channels=16, shared_head=True, pred_kernel_size=3,
                     loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                                   loss_weight=1.0))
    keys = set(head.state_dict().keys())
    assert 'cls_convs.0.1.conv.weight' in keys and 'reg_convs.0.0.conv.weight' in keys
    assert 'cls_heads.0.weight' in keys and 'cls_heads.1.weight' not in keys
    assert head.cls_heads[0].weight.shape == (2, 16, 3, 3)  # sigmoid: one channel per anchor
    assert torch.allclose(head.cls_heads[0].bias, torch.full((2, ), bias_init_with_prob(0.01)))
    cls, box, kpt, _ = head(feats())
    assert cls[1].shape == (1, 2, 8, 8) and kpt[1].shape == (1, 20, 8, 8)
    losses = head.loss_by_feat(cls, box, kpt, None, [faces()], [meta()])
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())


# ---------------------------------------------------------------------------------- losses


def test_loss_without_faces_only_classification():
    head = make_head()
    outs = head(feats())
    losses = head.loss_by_feat(*outs, [no_faces()], [meta()])
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_kpt'}
    assert torch.isfinite(losses['loss_cls']) and losses['loss_cls'] > 0
    assert losses['loss_bbox'].item() == 0.0 and losses['loss_kpt'].item() == 0.0
    # without min_neg an image without faces contributes nothing, as in the reference
    head0 = make_head(train_cfg=dict(TRAIN_CFG, ohem=dict(type='OHEMNegativeMiner', min_neg=0)))
    assert head0.loss_by_feat(*head0(feats()), [no_faces()], [meta()])['loss_cls'] == 0


@pytest.mark.parametrize('keypoints_field', [True, False])
def test_loss_faces_without_landmarks(keypoints_field):
    head = make_head()
    outs = head(feats())
    gt = faces(landmarks=False, keypoints_field=keypoints_field)
    losses = head.loss_by_feat(*outs, [gt], [meta()])
    assert losses['loss_cls'] > 0 and losses['loss_bbox'] > 0
    assert losses['loss_kpt'].item() == 0.0


def test_loss_with_landmarks_and_gradients():
    head = make_head()
    x = feats(batch=2)
    outs = head(x)
    losses = head.loss_by_feat(*outs, [faces(), no_faces()], [meta(), meta()])
    for k, v in losses.items():
        assert torch.isfinite(v) and v > 0, k
    sum(losses.values()).backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in x)
    assert head.kpt_heads[0].weight.grad.abs().sum() > 0


def test_landmark_targets_gather_the_assigned_face():
    head = make_head()
    anchors = flat_anchors(head)
    gt = faces()
    gt.keypoints_valid[1, 2] = 0  # one invalid point of face 2
    t = head.get_targets_by_priors([anchors], [torch.ones(len(anchors), dtype=torch.bool)],
                                   [len(anchors)], [gt], [meta()])
    pos = torch.nonzero(t['labels'][0] == 0).flatten()
    assert t['num_pos'] == len(pos) > 2
    ious = bbox_overlaps(anchors[pos], FACE_BOXES)
    face = ious.argmax(1)
    assert set(face.tolist()) == {0, 1}
    decoded = head.landmark_coder.decode(anchors[pos], t['kpt_targets'][0, pos])
    w = t['kpt_weights'][0, pos].view(-1, 5, 2)
    expected = gt.keypoints[face]
    valid = w > 0
    assert torch.allclose(decoded[valid], expected[valid], atol=1e-4)
    assert w[face == 1][:, 2].sum() == 0 and w[face == 0].min() == 1
    # box targets decode back to the face boxes
    boxes = head.bbox_coder.decode(anchors[pos], t['bbox_targets'][0, pos])
    assert torch.allclose(boxes, FACE_BOXES[face], atol=1e-3)
    # everything else is weight-0 for regression
    neg = t['labels'][0] == 1
    assert t['bbox_weights'][0, neg].sum() == 0 and t['kpt_weights'][0, neg].sum() == 0


def test_ignored_faces_are_neither_positive_nor_negative():
    head = make_head()
    anchors = flat_anchors(head)
    ignore = InstanceData(bboxes=HorizontalBoxes(torch.tensor([[80., 10., 120., 50.]])))
    t = head.get_targets_by_priors([anchors], [torch.ones(len(anchors), dtype=torch.bool)],
                                   [len(anchors)], [faces()], [meta()], [ignore])
    iof = bbox_overlaps(anchors, ignore.bboxes.tensor, mode='iof')[:, 0]
    inside = iof > 0.5
    assert inside.sum() > 0
    assert (t['label_weights'][0, inside] == 0).all()
    assert (t['labels'][0, inside] == 1).all()
    # the loss still works and the ignored anchors are never mined
    losses = head.loss_by_feat(*head(feats()), [faces()], [meta()], [ignore])
    assert all(torch.isfinite(v) for v in losses.values())


def test_ohem_classification_loss_equals_manual_mining():
    head = make_head()
    outs = head(feats(seed=3))
    gt = faces()
    losses = head.loss_by_feat(*outs, [gt], [meta()])
    anchors = flat_anchors(head)
    t = head.get_targets_by_priors([anchors], [torch.ones(len(anchors), dtype=torch.bool)],
                                   [len(anchors)], [gt], [meta()])
    scores = head._flatten(outs[0], 2)[0]
    ce = F.cross_entropy(scores, t['labels'][0], reduction='none')
    pos = t['labels'][0] == 0
    neg = (t['labels'][0] == 1) & (t['label_weights'][0] > 0)
    num_pos = int(pos.sum())
    hard = ce.masked_fill(~neg, -1).topk(3 * num_pos).values
    expected = (ce[pos].sum() + hard.sum()) / num_pos
    assert torch.allclose(losses['loss_cls'], expected, rtol=1e-5)
    # without OHEM every negative counts, a different (smaller per-negative) average
    plain = make_head(train_cfg=dict(TRAIN_CFG, ohem=None))
    plain.load_state_dict(head.state_dict())
    all_losses = plain.loss_by_feat(*outs, [gt], [meta()])
    assert torch.allclose(all_losses['loss_cls'], (ce[pos].sum() + ce[neg].sum()) / num_pos,
                          rtol=1e-5)


def test_vertices_branch():
    head = make_head(num_vertices=4)
    assert 'vert_heads.1.weight' in head.state_dict()
    outs = head(feats())
    assert outs[3][0].shape == (1, 2 * 12, 16, 16)
    gt = faces()
    g = torch.Generator().manual_seed(0)
    gt.vertices = torch.cat([gt.keypoints[:, :4], torch.randn(2, 4, 1, generator=g)], -1)
    gt.vertices_valid = torch.tensor([1., 0.])
    losses = head.loss_by_feat(*outs, [gt], [meta()])
    assert losses['loss_vert'] > 0 and torch.isfinite(losses['loss_vert'])
    gt.vertices_valid = torch.tensor([0., 0.])
    assert head.loss_by_feat(*outs, [gt], [meta()])['loss_vert'].item() == 0.0
    # a face without the vertices field: no vertex loss
    assert head.loss_by_feat(*outs, [faces()], [meta()])['loss_vert'].item() == 0.0


def test_head_without_landmarks():
    head = make_head(with_landmarks=False)
    assert not any(k.startswith('kpt_heads') for k in head.state_dict())
    outs = head(feats())
    assert outs[2] is None
    losses = head.loss_by_feat(*outs, [faces()], [meta()])
    assert set(losses) == {'loss_cls', 'loss_bbox'}
    head.eval()
    res = head.predict_by_feat(*outs, batch_img_metas=[meta()],
                               cfg=dict(TEST_CFG, score_thr=0.0))[0]
    assert 'keypoints' not in res and len(res) > 0


# ----------------------------------------------------------------------------- prediction


def _set(level_maps, level, a, y, x, values, per_anchor):
    for j, v in enumerate(values):
        level_maps[level][0, a * per_anchor + j, y, x] = v


def _hand_outputs(head):
    """Three confident anchors; the third is regressed onto the first with a lower score."""
    sizes = [(IMG // s, IMG // s) for s in STRIDES]
    cls = [torch.stack([torch.full(hw, -5.0), torch.full(hw, 5.0)] * 2)[None] for hw in sizes]
    box = [torch.zeros(1, 8, *hw) for hw in sizes]
    kpt = [torch.zeros(1, 20, *hw) for hw in sizes]
    d1 = [1., 0., -1., 0., 0., 1., 0., -1., .5, .5]
    d2 = [-.5] * 10
    d3 = [3.] * 10
    # anchor A: level 0, (y=3, x=4), a=0 -> centre (36, 28), size 16 -> [28, 20, 44, 36]
    _set(cls, 0, 0, 3, 4, [5., -5.], 2)
    _set(kpt, 0, 0, 3, 4, d1, 10)
    # anchor B: level 1, (y=5, x=5), a=0 -> centre (88, 88), size 64 -> [56, 56, 120, 120]
    _set(cls, 1, 0, 5, 5, [4., -4.], 2)
    _set(kpt, 1, 0, 5, 5, d2, 10)
    # anchor C: level 0, (y=3, x=5), a=0 -> centre (44, 28); dx=-5 moves it onto A
    _set(cls, 0, 0, 3, 5, [3., -3.], 2)
    _set(box, 0, 0, 3, 5, [-5., 0., 0., 0.], 4)
    _set(kpt, 0, 0, 3, 5, d3, 10)
    exp_boxes = torch.tensor([[28., 20., 44., 36.], [56., 56., 120., 120.]])
    ctr = (exp_boxes[:, :2] + exp_boxes[:, 2:]) / 2
    wh = exp_boxes[:, 2:] - exp_boxes[:, :2]
    exp_kpts = ctr[:, None] + torch.tensor([d1, d2]).view(2, 5, 2) * 0.1 * wh[:, None]
    return (cls, box, kpt, None), exp_boxes, exp_kpts


def test_predict_keypoints_aligned_and_rescaled():
    head = make_head()
    outs, exp_boxes, exp_kpts = _hand_outputs(head)
    res = head.predict_by_feat(*outs, batch_img_metas=[meta()], rescale=False)[0]
    assert len(res) == 2  # C is suppressed by NMS, the rest is below score_thr
    assert torch.allclose(res.bboxes, exp_boxes, atol=1e-4)
    assert res.keypoints.shape == (2, 5, 2)
    assert torch.allclose(res.keypoints, exp_kpts, atol=1e-4)
    assert torch.allclose(res.scores, torch.sigmoid(torch.tensor([10., 8.])), atol=1e-6)
    assert res.labels.tolist() == [0, 0]
    # rescale: input image was resized by (w 0.5, h 0.25) from the original
    sf = (0.5, 0.25)
    res = head.predict_by_feat(*outs, batch_img_metas=[meta(sf)], rescale=True)[0]
    assert torch.allclose(res.bboxes, exp_boxes / torch.tensor([0.5, 0.25, 0.5, 0.25]),
                          atol=1e-3)
    assert torch.allclose(res.keypoints, exp_kpts / torch.tensor([0.5, 0.25]), atol=1e-3)
    # without NMS the third detection stays, still with its own landmarks
    res = head.predict_by_feat(*outs, batch_img_metas=[meta()], with_nms=False)[0]
    assert len(res) == 3
    c = (res.scores - torch.sigmoid(torch.tensor(6.))).abs().argmin()
    assert torch.allclose(res.bboxes[c], exp_boxes[0], atol=1e-4)
    assert torch.allclose(res.keypoints[c], torch.tensor([44., 28.]) + 3 * 0.1 * 16, atol=1e-4)
    # max_per_img / nms_pre keep fields aligned
    res = head.predict_by_feat(*outs, batch_img_metas=[meta()],
                               cfg=dict(TEST_CFG, max_per_img=1, nms_pre=1))[0]
    assert len(res) == 1 and torch.allclose(res.keypoints[0], exp_kpts[0], atol=1e-4)


def test_predict_vertices_rescaled():
    head = make_head(num_vertices=3)
    cls, box, kpt, _ = _hand_outputs(head)[0]
    vert = [torch.zeros(1, 18, IMG // s, IMG // s) for s in STRIDES]
    _set(vert, 0, 0, 3, 4, [1., 2., 3.] * 3, 9)
    res = head.predict_by_feat(cls, box, kpt, vert, batch_img_metas=[meta((0.5, 0.25))],
                               rescale=True)[0]
    assert res.vertices.shape == (2, 3, 3)
    # anchor A: centre (36, 28), size 16 -> (36 + 1.6, 28 + 3.2, 3 * 1.6) in input pixels
    exp = torch.tensor([37.6 / 0.5, 31.2 / 0.25, 4.8 / (0.5 * 0.25)**0.5])
    assert torch.allclose(res.vertices[0], exp.expand(3, 3), atol=1e-3)


def test_predict_through_head_predict_api():
    from mmdet.structures import DetDataSample
    head = make_head()
    head.eval()
    ds = DetDataSample(metainfo=meta())
    with torch.no_grad():
        res = head.predict(feats(), [ds], rescale=True)[0]
    assert {'bboxes', 'scores', 'labels', 'keypoints'} <= set(res.keys())
    assert res.keypoints.shape[0] == res.bboxes.shape[0]


# -------------------------------------------------------------------------------- cascade


def make_cascade(**kw):
    cfg = dict(type='CascadeRetinaFaceHead', num_classes=1, in_channels=IN_CH,
               shared_head=False, stacked_convs=0,
               train_cfg=dict(
                   stage1=dict(TRAIN_CFG, assigner=dict(
                       type='LandmarkAwareAssigner',
                       assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3,
                                     min_pos_iou=0.2, match_low_quality=True))),
                   stage2=dict(TRAIN_CFG, assigner=dict(
                       type='LandmarkAwareAssigner',
                       assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4,
                                     min_pos_iou=0.2, match_low_quality=True)))),
               test_cfg=copy.deepcopy(TEST_CFG))
    cfg.update(kw)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def test_cascade_structure():
    head = make_cascade()
    assert isinstance(head, CascadeRetinaFaceHead)
    keys = set(head.state_dict())
    assert 'stage1.cls_heads.0.weight' in keys and 'stage2.kpt_heads.2.bias' in keys
    assert head.stage1.assigner.assigner.pos_iou_thr == 0.7
    assert head.stage2.assigner.assigner.pos_iou_thr == 0.5
    outs = head(feats())
    assert len(outs) == 8 and outs[4][0].shape == (1, 4, 16, 16)
    with pytest.raises(KeyError, match='stage2'):
        make_cascade(train_cfg=dict(stage1=TRAIN_CFG))


def test_cascade_stage2_uses_stage1_boxes():
    head = make_cascade()
    x = feats(seed=1)
    outs = list(head(x))
    outs[1] = [o * 50 for o in outs[1]]  # make stage-1 regression clearly non-trivial
    anchors = flat_anchors(head.stage1)
    refined = head.refine_priors(anchors, outs[1])
    deltas = head.stage1._flatten(outs[1], 4)[0]
    assert torch.allclose(refined[0], head.stage1.bbox_coder.decode(anchors, deltas))
    assert not refined.requires_grad
    assert (refined[0] - anchors).abs().max() > 1.0

    gt = [faces()]
    losses = head.loss_by_feat(*outs, gt, [meta()])
    assert set(losses) == {f's{i}.loss_{k}' for i in (1, 2) for k in ('cls', 'bbox', 'kpt')}
    valid = [torch.ones(len(anchors), dtype=torch.bool)]
    n = [len(anchors)]
    on_refined = head.stage2.loss_by_priors(*outs[4:], list(refined), valid, n, gt, [meta()])
    on_anchors = head.stage2.loss_by_priors(*outs[4:], [anchors], valid, n, gt, [meta()])
    for k in ('cls', 'bbox', 'kpt'):
        assert torch.allclose(losses[f's2.loss_{k}'], on_refined[f'loss_{k}'])
    assert not torch.allclose(on_refined['loss_bbox'], on_anchors['loss_bbox'])
    # stage-2 box targets are encoded against the stage-1 boxes
    t = head.stage2.get_targets_by_priors(list(refined), valid, n, gt, [meta()])
    pos = torch.nonzero(t['labels'][0] == 0).flatten()
    assert len(pos) > 0
    back = head.stage2.bbox_coder.decode(refined[0, pos], t['bbox_targets'][0, pos])
    ious = bbox_overlaps(refined[0, pos], FACE_BOXES)
    assert torch.allclose(back, FACE_BOXES[ious.argmax(1)], atol=1e-3)
    # gradients flow into both stages, not from stage 2 into stage-1 boxes
    sum(losses.values()).backward()
    assert head.stage1.reg_heads[0].weight.grad is not None
    assert head.stage2.reg_heads[0].weight.grad is not None


def test_cascade_predict_decodes_from_stage1_boxes():
    head = make_cascade()
    for conv in list(head.stage2.reg_heads) + list(head.stage2.kpt_heads):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    outs = list(head(feats(seed=2)))
    with torch.no_grad():
        outs[1] = [o * 20 for o in outs[1]]
    anchors = flat_anchors(head.stage1)
    refined = head.refine_priors(anchors, outs[1])[0]
    cfg = dict(score_thr=-1.0, nms_pre=-1, nms=dict(type='nms', iou_threshold=0.4),
               max_per_img=100000)
    res = head.predict_by_feat(*outs, batch_img_metas=[meta()], cfg=cfg, with_nms=False)[0]
    assert len(res) == len(anchors)
    assert torch.allclose(res.bboxes, refined.clamp(0, IMG), atol=1e-3)
    ctr = (refined[:, :2] + refined[:, 2:]) / 2
    assert torch.allclose(res.keypoints, ctr[:, None].expand(-1, 5, -1), atol=1e-3)
    # scores are stage 2's
    s2 = head.stage2._flatten(outs[4], 2)[0].softmax(-1)[:, 0]
    assert torch.allclose(res.scores, s2, atol=1e-6)
    # changing stage-1 regression changes the final boxes
    outs[1] = [o * 0 for o in outs[1]]
    res0 = head.predict_by_feat(*outs, batch_img_metas=[meta()], cfg=cfg, with_nms=False)[0]
    assert torch.allclose(res0.bboxes, anchors.clamp(0, IMG), atol=1e-3)


def test_cascade_without_landmarks():
    head = make_cascade(with_landmarks=False,
                        loss_cls=dict(type='FocalLoss', use_sigmoid=True, loss_weight=1.0))
    assert not any('kpt' in k for k in head.state_dict())
    outs = head(feats())
    losses = head.loss_by_feat(*outs, [faces(keypoints_field=False)], [meta()])
    assert set(losses) == {'s1.loss_cls', 's1.loss_bbox', 's2.loss_cls', 's2.loss_bbox'}
    assert all(torch.isfinite(v) for v in losses.values())
    res = head.predict_by_feat(*outs, batch_img_metas=[meta()],
                               cfg=dict(TEST_CFG, score_thr=0.0))[0]
    assert 'keypoints' not in res and len(res) > 0


def test_plain_assigner_reads_landmarks_from_gt_instances():
    wrapped = make_head()
    plain = make_head(train_cfg=dict(TRAIN_CFG, assigner=TRAIN_CFG['assigner']['assigner']))
    plain.load_state_dict(wrapped.state_dict())
    outs = wrapped(feats(seed=4))
    a = wrapped.loss_by_feat(*outs, [faces()], [meta()])
    b = plain.loss_by_feat(*outs, [faces()], [meta()])
    for k in a:
        assert torch.allclose(a[k], b[k]), k
    assert a['loss_kpt'] > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match='landmark_coder'):
        make_head(landmark_coder=dict(type='LandmarkCoder', num_keypoints=3))
    with pytest.raises(ValueError, match='stacked_convs'):
        make_head(stacked_convs=-1)
    head = make_head()
    gt = faces()
    gt.keypoints = gt.keypoints[:, :3]
    gt.keypoints_valid = gt.keypoints_valid[:, :3]
    with pytest.raises(ValueError, match='num_keypoints'):
        head.loss_by_feat(*head(feats()), [gt], [meta()])


def test_predict_nothing_for_an_unreadable_image_placeholder():
    """A batch with a placeholder (``img_unreadable``, see WIDERFaceDataset's
    ``undecodable_images``) gets empty predictions for that image only, with every field."""
    head = make_head()
    outs, exp_boxes, _ = _hand_outputs(head)
    outs2 = tuple(None if o is None else [torch.cat([m, m]) for m in o] for o in outs)
    metas = [meta(), dict(meta(), img_unreadable=True)]
    good, bad = head.predict_by_feat(*outs2, batch_img_metas=metas, rescale=True)
    assert len(good) == 2 and torch.allclose(good.bboxes, exp_boxes, atol=1e-4)
    assert len(bad) == 0
    assert bad.bboxes.shape == (0, 4) and bad.keypoints.shape == (0, 5, 2)
    assert bad.scores.shape == (0, ) and bad.labels.shape == (0, )
    cascade = make_cascade()
    res = cascade.predict_by_feat(*cascade(feats(seed=2)), batch_img_metas=[metas[1]],
                                  cfg=dict(score_thr=-1.0, nms_pre=-1, max_per_img=100,
                                           nms=dict(type='nms', iou_threshold=0.4)))[0]
    assert len(res) == 0 and res.keypoints.shape == (0, 5, 2)
