"""Show or save dataset images after the pipeline, with boxes and numbered landmarks.

Example::

    python tools/analysis_tools/browse_dataset.py \
        configs/_base_/datasets/wider_face_synthetic.py --output-dir work_dirs/browse \
        --not-show --max-images 20

Green boxes are faces, grey boxes ignored faces; landmarks are drawn as coloured dots numbered
0-4 (left eye, right eye, nose, left and right mouth corner), dense vertices (if any) as small
dots. Landmarks without annotation are not drawn. The config needs
``projects.retinaface`` is imported by the tool itself, so any dataset config works.
"""
import argparse
import os
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# BGR colours of the five landmarks (reference RetinaFace demo colours).
KPT_COLORS = ((0, 0, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 0, 0))


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Browse a face dataset after its pipeline')
    parser.add_argument('config', help='config file')
    parser.add_argument('--output-dir', default=None, help='folder to write the images to')
    parser.add_argument('--not-show', action='store_true', help='do not open a window')
    parser.add_argument('--show-interval', type=float, default=2,
                        help='seconds each image is shown')
    parser.add_argument('--max-images', type=int, default=None,
                        help='stop after this many images (default: all)')
    parser.add_argument('--split', choices=('train', 'val', 'test'), default='train',
                        help='which dataloader of the config to browse')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value')
    return parser.parse_args(argv)


def _np(x):
    if hasattr(x, 'tensor'):
        x = x.tensor
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    return x


def draw_faces(img, instances, color=(0, 255, 0)):
    """Draw boxes, numbered landmarks and vertices of ``instances`` on ``img`` (in place)."""
    import cv2
    import numpy as np
    if 'bboxes' not in instances or len(instances) == 0:
        return img
    boxes = _np(instances.bboxes)
    kpts = _np(instances.keypoints) if 'keypoints' in instances else None
    kvalid = _np(instances.keypoints_valid) if 'keypoints_valid' in instances else None
    verts = _np(instances.vertices) if 'vertices' in instances else None
    vvalid = _np(instances.vertices_valid) if 'vertices_valid' in instances else None
    scale = max(img.shape[:2]) / 640
    thick = max(1, int(round(scale)))
    for i, box in enumerate(boxes):
        x1, y1, x2, y2 = [int(round(float(v))) for v in box]
        cv2.rectangle(img, (x1, y1), (x2, y2), color, thick)
        if verts is not None and vvalid[i] > 0:
            for vx, vy in verts[i][:, :2]:
                if np.isfinite(vx) and np.isfinite(vy):
                    cv2.circle(img, (int(round(vx)), int(round(vy))), 1, (255, 255, 0), -1)
        if kpts is None:
            continue
        radius = max(1, int(round(min(x2 - x1, y2 - y1) / 25)))
        for k, (px, py) in enumerate(kpts[i]):
            if kvalid is not None and kvalid[i][k] <= 0:
                continue
            pt = (int(round(float(px))), int(round(float(py))))
            c = KPT_COLORS[k % len(KPT_COLORS)]
            cv2.circle(img, pt, radius, c, -1)
            if x2 - x1 >= 20:
                cv2.putText(img, str(k), (pt[0] + radius + 1, pt[1]), cv2.FONT_HERSHEY_SIMPLEX,
                            0.3 * thick, c, 1, cv2.LINE_AA)
    return img


def render(item) -> 'np.ndarray':  # noqa: F821
    """BGR uint8 image of a packed sample with its annotations drawn."""
    import numpy as np
    img = item['inputs'].permute(1, 2, 0).cpu().numpy()
    img = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))
    if img.shape[2] == 1:
        img = np.ascontiguousarray(np.repeat(img, 3, axis=2))
    sample = item['data_samples']
    if 'ignored_instances' in sample:
        draw_faces(img, sample.ignored_instances, color=(160, 160, 160))
    if 'gt_instances' in sample:
        draw_faces(img, sample.gt_instances, color=(0, 255, 0))
    return img


def main(argv=None):
    args = parse_args(argv)
    import cv2
    from mmdet.registry import DATASETS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.utils import ProgressBar

    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    import projects.retinaface  # noqa: F401  (registers our datasets/transforms for any config)
    dataset = DATASETS.build(cfg[f'{args.split}_dataloader']['dataset'])
    total = len(dataset) if args.max_images is None else min(len(dataset), args.max_images)
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
    progress = ProgressBar(total)
    for i in range(total):
        item = dataset[i]
        img = render(item)
        meta = item['data_samples'].metainfo
        stem = osp.splitext(osp.basename(meta.get('img_path', f'{i}')))[0]
        if args.output_dir:
            cv2.imwrite(osp.join(args.output_dir, f'{i:05d}_{stem}.jpg'), img)
        if not args.not_show:
            cv2.imshow('browse_dataset', img)
            cv2.waitKey(max(1, int(args.show_interval * 1000)))
        progress.update()
    if not args.not_show:
        cv2.destroyAllWindows()


if __name__ == '__main__':
    main()
