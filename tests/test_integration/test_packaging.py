"""``pip install .`` gives a package that mmdet configs outside this checkout can mix in.

The README promises ``custom_imports=dict(imports=['projects.retinaface'])`` works "from this
checkout or after ``pip install .``". The wheel is built from the checkout, installed into a
temporary folder, and used from a directory where the checkout is not importable.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import REPO_ROOT

MIX_CONFIG = """
_base_ = ['mmdet::_base_/models/retinanet_r50_fpn.py']
custom_imports = dict(imports=['projects.retinaface'], allow_failed_imports=False)
model = dict(
    backbone=dict(init_cfg=None),
    neck=[dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256, start_level=1,
               add_extra_convs='on_input', num_outs=5),
          dict(type='ContextModule', in_channels=256, out_channels=256, num_levels=5)],
    bbox_head=dict(
        _delete_=True, type='RetinaFaceHead', num_classes=1, in_channels=256,
        anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=3,
                              ratios=[1.0], strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                        target_stds=[0.1, 0.1, 0.2, 0.2])))
"""

USE_IT = """
import json, sys
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample

cfg = Config.fromfile('mix.py')
import importlib
for name in cfg.custom_imports['imports']:
    importlib.import_module(name)
import projects.retinaface
init_default_scope('mmdet')
torch.manual_seed(0)
model = MODELS.build(cfg.model).eval()
sample = DetDataSample(metainfo=dict(img_shape=(128, 160), ori_shape=(128, 160),
                                     scale_factor=(1., 1.), pad_shape=(128, 160)))
data = model.data_preprocessor({'inputs': [torch.rand(3, 128, 160) * 255],
                                'data_samples': [sample]})
with torch.no_grad():
    pred = model.predict(data['inputs'], data['data_samples'])[0].pred_instances
print(json.dumps(dict(package=projects.retinaface.__file__,
                      checkout_importable=any(p.rstrip('/') == sys.argv[1] for p in sys.path),
                      neck=[type(m).__name__ for m in model.neck],
                      head=type(model.bbox_head).__name__,
                      boxes=list(pred.bboxes.shape), keypoints=list(pred.keypoints.shape))))
"""


def test_installed_wheel_mixes_into_a_stock_mmdet_detector(tmp_path):
    wheels, target, work = tmp_path / 'wheels', tmp_path / 'site', tmp_path / 'elsewhere'
    work.mkdir()
    # build from a copy of what the package is made of: an in-tree build would leave build/
    # in the checkout, and a stale build/lib from an earlier build would hide missing modules
    sources = tmp_path / 'sources'
    shutil.copytree(REPO_ROOT / 'projects', sources / 'projects',
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    for name in ('setup.py', 'pyproject.toml'):
        shutil.copy(REPO_ROOT / name, sources / name)
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', str(sources), '--no-deps',
                    '--no-build-isolation', '-q', '-w', str(wheels)], check=True, cwd=work)
    (wheel, ) = wheels.glob('mmdet_retinaface-*.whl')
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--target',
                    str(target), str(wheel)], check=True, cwd=work)

    # every module of the checkout's package is in the installed one
    src = REPO_ROOT / 'projects'
    expected = sorted(str(p.relative_to(src)) for p in src.rglob('*.py')
                      if '__pycache__' not in p.parts)
    installed = sorted(str(p.relative_to(target / 'projects'))
                       for p in (target / 'projects').rglob('*.py')
                       if '__pycache__' not in p.parts)
    assert installed == expected

    (work / 'mix.py').write_text(MIX_CONFIG)
    (work / 'use_it.py').write_text(textwrap.dedent(USE_IT))
    out = subprocess.run([sys.executable, 'use_it.py', str(REPO_ROOT)], cwd=work,
                         env={**os.environ, 'PYTHONPATH': str(target)},
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(result['package']).resolve().is_relative_to(target.resolve())
    assert not result['checkout_importable']
    assert result['neck'] == ['FPN', 'ContextModule']
    assert result['head'] == 'RetinaFaceHead'
    n = result['boxes'][0]
    assert result['boxes'] == [n, 4] and result['keypoints'] == [n, 5, 2]
