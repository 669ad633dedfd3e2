"""Evaluate a checkpoint on the held-out train slice and on the val images, in one command.

    python tools/analysis_tools/eval_held_out.py CONFIG CHECKPOINT [--out metrics.json]
    python tools/analysis_tools/eval_held_out.py CONFIG --untrained [--out metrics.json]

Two evaluations with the config's test pipeline (original image size) and ``test_cfg``:

1. ``held_out_dataloader`` with ``held_out_evaluator`` of the config (e.g.
   ``configs/retinaface_mnet025_wider_shared.py``: the every-10th-image slice of the shared train
   images, ``LandmarkNMEMetric`` + ``FaceAPMetric``; when the config has no
   ``held_out_evaluator``, both metrics at IoU 0.5 are used);
2. ``test_dataloader`` with ``test_evaluator`` (WIDER FACE easy / medium / hard AP).

``--untrained`` evaluates the model as initialised for training (``model.init_weights()``:
e.g. the ImageNet backbone and a random head, seeded by ``--seed``) instead of a checkpoint;
the initialised weights are saved to ``WORK_DIR/untrained_seed<seed>.pth`` first so the run is
reproducible. Checkpoints of another config with the same architecture work too (e.g. the
converted published weights, ``checkpoints/retinaface_mnet025_reference.pth``, with
``configs/retinaface_mnet025_wider_shared.py``). ``--skip-held-out`` / ``--skip-val`` run only
one part. Results are printed and, with ``--out``, written as JSON.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from copy import deepcopy

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmengine.config import Config, DictAction  # noqa: E402

DEFAULT_HELD_OUT_EVALUATOR = [
    dict(type='LandmarkNMEMetric', iou_thr=0.5),
    dict(type='FaceAPMetric', iou_thr=0.5),
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Held-out NME + all-faces AP and val WIDER AP of a checkpoint')
    parser.add_argument('config', help='config file (with held_out_dataloader)')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint file')
    parser.add_argument('--untrained', action='store_true',
                        help='evaluate the initialised, untrained model (no checkpoint)')
    parser.add_argument('--seed', type=int, default=0, help='seed of --untrained (0)')
    parser.add_argument('--work-dir', help='work dir (default work_dirs/eval_held_out/<cfg>)')
    parser.add_argument('--out', help='write the metrics to this JSON file')
    parser.add_argument('--skip-held-out', action='store_true', help='no held-out evaluation')
    parser.add_argument('--skip-val', action='store_true', help='no val evaluation')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, xxx=yyy (as tools/test.py)')
    args = parser.parse_args(argv)
    if args.untrained == (args.checkpoint is not None):
        parser.error('give a CHECKPOINT or --untrained (exactly one)')
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        parser.error(f'checkpoint {args.checkpoint!r} does not exist')
    if args.skip_held_out and args.skip_val:
        parser.error('nothing to do: --skip-held-out and --skip-val')
    return args


def load_cfg(args) -> Config:
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file {args.config!r} does not exist')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    else:
        cfg.work_dir = osp.join('work_dirs', 'eval_held_out',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.launcher = 'none'
    # evaluation only: no training hooks / loops needed
    cfg.train_dataloader = None
    cfg.train_cfg = None
    cfg.optim_wrapper = None
    cfg.param_scheduler = None
    cfg.val_dataloader = None
    cfg.val_cfg = None
    cfg.val_evaluator = None
    cfg.visualizer = dict(type='FaceLocalVisualizer', name='visualizer',
                          vis_backends=[dict(type='LocalVisBackend')])
    return cfg


def save_untrained(cfg: Config, seed: int) -> str:
    """Build the model, ``init_weights()`` it with ``seed`` and save it; return the path."""
    import torch
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    from mmengine.runner import set_random_seed
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    set_random_seed(seed)
    model = MODELS.build(deepcopy(cfg.model))
    model.init_weights()
    os.makedirs(cfg.work_dir, exist_ok=True)
    path = osp.join(cfg.work_dir, f'untrained_seed{seed}.pth')
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(note=f'model.init_weights() with seed {seed}')), path)
    return path


def run_test(cfg: Config, checkpoint: str, dataloader, evaluator, tag: str) -> dict:
    from mmengine.runner import Runner
    c = deepcopy(cfg)
    c.test_dataloader = dataloader
    c.test_evaluator = evaluator
    c.load_from = checkpoint
    c.work_dir = osp.join(cfg.work_dir, tag)
    runner = Runner.from_cfg(c)
    t0 = time.perf_counter()
    metrics = runner.test()
    return dict(metrics, seconds=round(time.perf_counter() - t0, 1))


def main(argv=None):
    args = parse_args(argv)
    import projects.retinaface  # noqa: F401  (registers modules, safe checkpoint loading)
    cfg = load_cfg(args)
    ckpt = save_untrained(cfg, args.seed) if args.untrained else args.checkpoint
    results = dict(config=args.config, checkpoint=ckpt)
    if not args.skip_held_out:
        if cfg.get('held_out_dataloader') is None:
            raise KeyError(f'{args.config} has no held_out_dataloader')
        evaluator = cfg.get('held_out_evaluator') or DEFAULT_HELD_OUT_EVALUATOR
        results['held_out'] = run_test(cfg, ckpt, cfg.held_out_dataloader, evaluator,
                                       'held_out')
    if not args.skip_val:
        results['val'] = run_test(cfg, ckpt, cfg.test_dataloader, cfg.test_evaluator, 'val')
    text = json.dumps(results, indent=2, default=float)
    print(text)
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            f.write(text + '\n')
    return results


if __name__ == '__main__':
    main()
