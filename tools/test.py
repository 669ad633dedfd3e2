#!/usr/bin/env python
"""Test (and evaluate) a RetinaFace detector (same interface as mmdet 3.x ``tools/test.py``).

Examples::

    python tools/test.py CONFIG CHECKPOINT [--out results.pkl] [--show-dir vis] [--tta]
    bash tools/dist_test.sh CONFIG CHECKPOINT 8 [--out results.pkl]

``--out`` dumps every image's prediction (``pred_instances`` with bboxes, scores, labels,
keypoints, ...) with mmdet's ``DumpDetResults``. ``--tta`` wraps ``cfg.model`` in
``cfg.tta_model`` and replaces the test pipeline by ``cfg.tta_pipeline``. Works from any current
directory; checkpoints are loaded with ``torch.load(weights_only=True)``.
"""
import argparse
import os
import os.path as osp
import sys
import warnings
from copy import deepcopy

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmdet.engine.hooks.utils import trigger_visualization_hook  # noqa: E402
from mmdet.evaluation import DumpDetResults  # noqa: E402
from mmdet.registry import RUNNERS  # noqa: E402
from mmdet.utils import setup_cache_size_limit_of_dynamo  # noqa: E402
from mmengine import ConfigDict  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from projects.retinaface.utils import setup_cpu_distributed, teardown_distributed  # noqa: E402  (safe ckpt loading)

TTA_META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                 'flip_direction')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='MMDet test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved. '
        'If specified, it will be automatically saved '
        'to the work_dir/timestamp/show_dir')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation')
    # torch >= 2.0 launchers pass `--local-rank` instead of `--local_rank`.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def apply_tta(cfg):
    """Wrap ``cfg.model`` in ``cfg.tta_model`` and use ``cfg.tta_pipeline`` for testing.

    Like mmdet, missing entries get defaults with a warning: ``DetTTAModel`` (boxes only:
    landmarks are not merged, so face configs should define ``tta_model``) and a flip
    ``TestTimeAug`` ending with the test pipeline's own packer (e.g. ``PackFaceInputs``).
    """
    if 'tta_model' not in cfg:
        warnings.warn('Cannot find ``tta_model`` in config, we will set it as default '
                      '(DetTTAModel, which does not merge landmarks).', stacklevel=2)
        cfg.tta_model = dict(
            type='DetTTAModel',
            tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    if 'tta_pipeline' not in cfg:
        warnings.warn('Cannot find ``tta_pipeline`` in config, we will set it as default.',
                      stacklevel=2)
        test_data_cfg = cfg.test_dataloader.dataset
        while 'dataset' in test_data_cfg:
            test_data_cfg = test_data_cfg['dataset']
        if not test_data_cfg.get('pipeline'):
            raise ValueError('--tta needs cfg.tta_pipeline or a test dataset pipeline')
        cfg.tta_pipeline = deepcopy(test_data_cfg.pipeline)
        packer = deepcopy(cfg.tta_pipeline[-1])
        if not str(packer.get('type', '')).startswith('Pack'):
            packer = dict(type='PackDetInputs')
        meta_keys = tuple(packer.get('meta_keys', TTA_META_KEYS))
        packer['meta_keys'] = meta_keys + tuple(k for k in ('flip', 'flip_direction')
                                                if k not in meta_keys)
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[[dict(type='RandomFlip', prob=1.),
                         dict(type='RandomFlip', prob=0.)], [packer]])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    return cfg


def build_cfg(args):
    """Load the config and apply the command-line options (mmdet's priority rules)."""
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file {args.config!r} does not exist')
    if not osp.isfile(osp.expanduser(args.checkpoint)) and '://' not in args.checkpoint:
        raise FileNotFoundError(f'checkpoint {args.checkpoint!r} does not exist')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    # work_dir is determined in this priority: CLI > segment in file > filename
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
    if args.tta:
        cfg = apply_tta(cfg)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl or .pickle file, but got {args.out!r}')

    # Reduce the number of repeated compilations and improve testing speed.
    setup_cache_size_limit_of_dynamo()

    cfg = build_cfg(args)
    setup_cpu_distributed(cfg, args.launcher)

    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)

    # add `DumpResults` dummy metric (keeps every pred_instances field, keypoints included)
    if args.out is not None:
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))

    try:
        runner.test()
    finally:
        teardown_distributed()


if __name__ == '__main__':
    main()
