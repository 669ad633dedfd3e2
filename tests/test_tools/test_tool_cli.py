"""Command-line handling of tools/train.py and tools/test.py, and the shared runtime/schedule."""
import os.path as osp

import pytest
import torch
from mmdet.registry import OPTIMIZERS, PARAM_SCHEDULERS
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from tests.helpers import load_config, load_script
from tests.test_tools.toy_modules import write_toy_config


def _load_tool(name):
    return load_script(f'tools/{name}.py', f'rf_tools_{name}')


train_tool = _load_tool('train')
test_tool = _load_tool('test')


@pytest.fixture
def cfg_file(tmp_path):
    return write_toy_config(tmp_path / 'my_face_cfg.py')


def test_train_cfg_from_args(cfg_file, tmp_path):
    cfg = train_tool.build_cfg(train_tool.parse_args([cfg_file]))
    assert cfg.work_dir == osp.join('./work_dirs', 'my_face_cfg')
    assert cfg.launcher == 'none' and not cfg.resume and cfg.load_from is None

    ckpt = tmp_path / 'epoch_3.pth'
    ckpt.write_bytes(b'')
    cfg = train_tool.build_cfg(train_tool.parse_args([
        cfg_file, '--work-dir', 'wd', '--amp', '--auto-scale-lr', '--resume', str(ckpt),
        '--cfg-options', 'train_cfg.max_epochs=7', 'optim_wrapper.optimizer.lr=0.5'
    ]))
    assert cfg.work_dir == 'wd'
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.auto_scale_lr.enable is True
    assert cfg.resume is True and cfg.load_from == str(ckpt)
    assert cfg.train_cfg.max_epochs == 7 and cfg.optim_wrapper.optimizer.lr == 0.5

    cfg = train_tool.build_cfg(train_tool.parse_args([cfg_file, '--resume']))
    assert cfg.resume is True and cfg.load_from is None  # auto resume


def test_train_cli_errors(cfg_file, tmp_path):
    with pytest.raises(FileNotFoundError, match='--resume checkpoint'):
        train_tool.build_cfg(train_tool.parse_args([cfg_file, '--resume', 'missing.pth']))
    with pytest.raises(FileNotFoundError, match='config file'):
        train_tool.build_cfg(train_tool.parse_args([str(tmp_path / 'nope.py')]))
    no_scale = write_toy_config(tmp_path / 'no_scale.py', extra='auto_scale_lr = None\n')
    with pytest.raises(RuntimeError, match='auto_scale_lr'):
        train_tool.build_cfg(train_tool.parse_args([no_scale, '--auto-scale-lr']))
    with pytest.raises(SystemExit):  # argparse: launcher must be one of the choices
        train_tool.parse_args([cfg_file, '--launcher', 'ssh'])


def test_test_cfg_show_dir_and_tta(cfg_file, tmp_path):
    ckpt = tmp_path / 'model.pth'
    ckpt.write_bytes(b'')
    args = test_tool.parse_args([cfg_file, str(ckpt), '--show-dir', 'vis', '--tta'])
    cfg = Config.fromfile(cfg_file)
    cfg.tta_model = dict(type='SomeFaceTTA', tta_cfg=dict(max_per_img=10))
    cfg.tta_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackFaceInputs')]
    cfg.dump(str(tmp_path / 'tta_cfg.py'))
    args.config = str(tmp_path / 'tta_cfg.py')
    cfg = test_tool.build_cfg(args)
    assert cfg.load_from == str(ckpt)
    assert cfg.work_dir == osp.join('./work_dirs', 'tta_cfg')
    vis = cfg.default_hooks.visualization
    assert vis.type == 'FaceVisualizationHook' and vis.draw is True and vis.test_out_dir == 'vis'
    # --tta: the model is wrapped by cfg.tta_model, the test pipeline is cfg.tta_pipeline
    assert cfg.model.type == 'SomeFaceTTA' and cfg.model.tta_cfg.max_per_img == 10
    assert cfg.model.module.type == 'ToyFaceModel'
    assert [t['type'] for t in cfg.test_dataloader.dataset.pipeline] == \
        ['LoadImageFromFile', 'PackFaceInputs']


def test_default_tta_keeps_the_face_packer(cfg_file):
    cfg = Config.fromfile(cfg_file)
    cfg.test_dataloader.dataset.pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='PackFaceInputs', meta_keys=('img_id', 'img_path', 'scale_factor'))
    ]
    with pytest.warns(UserWarning, match='tta_model'):
        cfg = test_tool.apply_tta(cfg)
    assert cfg.model.type == 'DetTTAModel' and cfg.model.module.type == 'ToyFaceModel'
    tta = cfg.test_dataloader.dataset.pipeline[-1]
    assert tta['type'] == 'TestTimeAug'
    assert [t['prob'] for t in tta['transforms'][0]] == [1.0, 0.0]
    packer = tta['transforms'][1][0]
    assert packer['type'] == 'PackFaceInputs'
    assert packer['meta_keys'] == ('img_id', 'img_path', 'scale_factor', 'flip',
                                   'flip_direction')


def test_test_cli_errors(cfg_file, tmp_path):
    with pytest.raises(FileNotFoundError, match='checkpoint'):
        test_tool.build_cfg(test_tool.parse_args([cfg_file, str(tmp_path / 'missing.pth')]))
    with pytest.raises(ValueError, match='.pkl'):
        test_tool.main([cfg_file, str(tmp_path / 'missing.pth'), '--out', 'x.json'])


def test_default_runtime():
    cfg = load_config('configs/_base_/default_runtime.py')
    assert cfg.default_scope == 'mmdet'
    assert cfg.custom_imports.imports == ['projects.retinaface']
    assert [h['type'] for h in cfg.custom_hooks] == ['FiniteLossHook']
    assert cfg.default_hooks.checkpoint.interval == 1
    assert cfg.default_hooks.logger.interval == 50
    assert cfg.default_hooks.visualization.type == 'FaceVisualizationHook'
    assert cfg.log_processor.by_epoch is True
    assert cfg.load_from is None and cfg.resume is False


def _lr_curve(cfg, epoch_length):
    """Build a schedule config like the Runner does; return the lr of every iteration."""
    optimizer = OPTIMIZERS.build(dict(cfg.optim_wrapper.optimizer,
                                      params=[torch.nn.Parameter(torch.zeros(1))]))
    assert optimizer.defaults['momentum'] == 0.9
    assert optimizer.defaults['weight_decay'] == 5e-4
    wrapper = OptimWrapper(optimizer)
    schedulers = [
        PARAM_SCHEDULERS.build(dict(s), default_args=dict(optimizer=wrapper,
                                                          epoch_length=epoch_length))
        for s in cfg.param_scheduler
    ]
    lrs = []
    for _ in range(cfg.train_cfg.max_epochs):
        for _ in range(epoch_length):
            lrs.append(optimizer.param_groups[0]['lr'])
            for s in schedulers:
                if not s.by_epoch:
                    s.step()
        for s in schedulers:
            if s.by_epoch:
                s.step()
    return lrs


def test_paper_schedule_lr_curve():
    cfg = load_config('configs/_base_/schedules/retinaface_80e.py')
    assert cfg.train_cfg.max_epochs == 80 and cfg.auto_scale_lr.base_batch_size == 32
    epoch_length = 4
    lrs = _lr_curve(cfg, epoch_length)

    def lr_at(epoch, it=0):
        return lrs[epoch * epoch_length + it]

    assert lr_at(0) == pytest.approx(1e-3)
    assert 1e-3 < lr_at(2) < 1e-2  # linear warm-up, per iteration
    assert lr_at(2, 1) > lr_at(2)
    # mmengine's LinearLR reaches its end factor on the last warm-up iteration
    assert lr_at(4, 2) < 1e-2 and lr_at(4, 3) == pytest.approx(1e-2)
    assert lr_at(5) == pytest.approx(1e-2)
    assert lr_at(54, 3) == pytest.approx(1e-2)
    assert lr_at(55) == pytest.approx(1e-3) and lr_at(67, 3) == pytest.approx(1e-3)
    assert lr_at(68) == pytest.approx(1e-4) and lr_at(79, 3) == pytest.approx(1e-4)


@pytest.mark.parametrize('name,epochs,steps,batch', [('retinaface_mnet_250e', 250, (190, 220), 32),
                                                     ('retinaface_r50_100e', 100, (70, 90), 24)])
def test_reference_schedules(name, epochs, steps, batch):
    cfg = load_config(f'configs/_base_/schedules/{name}.py')
    assert cfg.auto_scale_lr.base_batch_size == batch
    lrs = _lr_curve(cfg, epoch_length=1)
    assert len(lrs) == epochs
    expected = [1e-3 * 0.1**sum(e >= s for s in steps) for e in range(epochs)]
    assert lrs == pytest.approx(expected)
