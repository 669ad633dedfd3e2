"""Training speed: images/second of the training loop and of the data pipeline alone.

    python tools/analysis_tools/train_speed_benchmark.py CONFIG [--iters 20] [--warmup 3] \\
        [--batch-size B] [--shared] [--no-init] [--data-iters 20] [--out speed.json] \\
        [--cfg-options ...]

1. **Training loop**, as ``tools/train.py`` runs it: the config's ``Runner`` (model, data loader
   with its workers, optimizer wrapper, hooks), trained for ``warmup + iters`` iterations with an
   ``IterBasedTrainLoop`` (no validation, no checkpoints, no LR schedule). A hook records the
   time of every iteration; the first ``warmup`` iterations and the start-up (building the
   runner, initialising weights, starting workers) are excluded. Reported: images/s, seconds per
   iteration, and the share of it spent waiting for data (between two iterations).
2. **Data pipeline alone**: the same training data loader (same workers, batch size and
   transforms, no model) iterated for ``data_iters`` batches after one warm-up batch; images/s.
   If this is not clearly above the training loop's images/s, data is the bottleneck.

``--shared`` points the training set at the shared WIDER FACE train images
(``../shared/data/widerface``, retinaface_gt/train/label.txt) whatever the config's data_root;
``--no-init`` sets ``model.backbone.init_cfg=None`` (no pretrained download). ``--threads``
sets torch's intra-op threads (default: torch's own). The numbers depend on the load of the
machine: report it with them.
"""
import argparse
import json
import os
import os.path as osp
import sys
import tempfile
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402

SHARED_WIDER = osp.join(osp.dirname(REPO_ROOT), 'shared', 'data', 'widerface') + '/'


class IterTimeRecorder(Hook):
    """Record wall-clock times around every training iteration."""

    priority = 'VERY_LOW'

    def __init__(self):
        self.before, self.after = [], []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.before.append(time.perf_counter())

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.after.append(time.perf_counter())


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Training-loop and data-pipeline speed')
    parser.add_argument('config')
    parser.add_argument('--iters', type=int, default=20, help='timed training iterations')
    parser.add_argument('--warmup', type=int, default=3, help='untimed first iterations')
    parser.add_argument('--data-iters', type=int, default=20,
                        help='batches for the data-pipeline benchmark (0: skip it)')
    parser.add_argument('--skip-train', action='store_true', help='only the data pipeline')
    parser.add_argument('--batch-size', type=int, help='override train batch size')
    parser.add_argument('--workers', type=int, help='override train dataloader num_workers')
    parser.add_argument('--threads', type=int, help='torch.set_num_threads')
    parser.add_argument('--shared', action='store_true',
                        help='train on the shared WIDER FACE train images')
    parser.add_argument('--no-init', action='store_true',
                        help='model.backbone.init_cfg=None (no pretrained weights)')
    parser.add_argument('--out', help='write the results as JSON')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, xxx=yyy')
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or args.data_iters < 0:
        parser.error('--iters must be >= 1, --warmup and --data-iters >= 0')
    return args


def build_cfg(args) -> Config:
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file {args.config!r} does not exist')
    cfg = Config.fromfile(args.config)
    if args.shared:
        if not osp.isdir(SHARED_WIDER):
            raise FileNotFoundError(f'--shared: {SHARED_WIDER} does not exist')
        ds = cfg.train_dataloader.dataset
        while 'dataset' in ds:
            ds = ds.dataset
        ds.data_root = SHARED_WIDER
        ds.ann_file = 'retinaface_gt/train/label.txt'
        ds.data_prefix = dict(img='WIDER_train/images/')
    if args.no_init:
        cfg.model.backbone.init_cfg = None
    if args.batch_size:
        cfg.train_dataloader.batch_size = args.batch_size
    if args.workers is not None:
        cfg.train_dataloader.num_workers = args.workers
        if args.workers == 0:
            cfg.train_dataloader.persistent_workers = False
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = 'none'
    cfg.work_dir = tempfile.mkdtemp(prefix='train_speed_')
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=args.warmup + args.iters,
                         val_interval=10**9)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.param_scheduler = None
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=max(args.iters, 1))
    cfg.visualizer = dict(type='FaceLocalVisualizer', name='visualizer',
                          vis_backends=[dict(type='LocalVisBackend')])
    cfg.load_from = None
    cfg.resume = False
    return cfg


def bench_train(cfg: Config, warmup: int) -> dict:
    from mmengine.runner import Runner
    t0 = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    recorder = IterTimeRecorder()
    runner.register_hook(recorder)
    runner.train()
    total = time.perf_counter() - t0
    bs = cfg.train_dataloader.batch_size
    after = recorder.after
    before = recorder.before
    # timed window: from the end of the last warm-up iteration to the end of the last one
    start = after[warmup - 1] if warmup > 0 else before[0]
    n = len(after) - warmup
    elapsed = after[-1] - start
    waits = [before[i] - after[i - 1] for i in range(max(warmup, 1), len(before))]
    return dict(
        batch_size=bs,
        iters=n,
        seconds=round(elapsed, 2),
        images_per_s=round(bs * n / elapsed, 3),
        s_per_iter=round(elapsed / n, 3),
        data_wait_share=round(sum(waits) / elapsed, 3) if waits else None,
        wall_incl_startup_s=round(total, 1))


def bench_data(cfg: Config, iters: int) -> dict:
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    it = iter(loader)
    next(it)  # warm-up (starts the workers)
    t = time.perf_counter()
    n_img = 0
    for _ in range(iters):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        n_img += len(batch['inputs'])
    elapsed = time.perf_counter() - t
    return dict(batches=iters, images=n_img, seconds=round(elapsed, 2),
                images_per_s=round(n_img / elapsed, 3),
                num_workers=cfg.train_dataloader.get('num_workers', 0))


def main(argv=None):
    args = parse_args(argv)
    import torch

    import projects.retinaface  # noqa: F401
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = build_cfg(args)
    res = dict(config=args.config, torch_threads=torch.get_num_threads(),
               cpu=_cpu_name(), loadavg_before=_loadavg())
    if not args.skip_train:
        res['train'] = bench_train(cfg.copy(), args.warmup)
    if args.data_iters:
        res['data'] = bench_data(cfg, args.data_iters)
    res['loadavg_after'] = _loadavg()
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            f.write(text + '\n')
    return res


def _cpu_name() -> str:
    from projects.retinaface.apis.onnx_inference import cpu_model_name
    return f'{cpu_model_name() or "unknown"} x {os.cpu_count()}'


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


if __name__ == '__main__':
    main()
