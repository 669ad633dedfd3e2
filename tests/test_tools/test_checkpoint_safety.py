"""Weights-only checkpoint loading: real mmengine checkpoints load, anything else is refused."""
import os
import os.path as osp
import pickle
import subprocess
import uuid

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from projects.retinaface.utils import (
    SAFE_GLOBALS,
    UnsafeCheckpointError,
    find_unsafe_globals,
    safe_load,
)
from projects.retinaface.utils.checkpoint_safety import _global_names
from tests.helpers import PYTHON, REPO_ROOT
from tests.test_tools.toy_modules import ToyFaceModel, write_toy_config


def _touch(path):
    """Side effect a malicious checkpoint would trigger on unpickling."""
    with open(path, 'w') as f:
        f.write('pwned')
    return path


class Payload:
    """An arbitrary pickled object (NEWOBJ + BUILD)."""

    def __init__(self):
        self.note = 'not a tensor'


class CodeRunner:
    """Executes code on unpickling (REDUCE of an arbitrary function)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return _touch, (self.marker, )


class AttrGrabber:
    """Pickles as ``getattr(HistoryBuffer, '__init__')``: getattr beyond the statistics."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


@pytest.fixture(scope='module')
def mmengine_ckpt(tmp_path_factory):
    """A real Runner checkpoint with full resume state (optimizer, schedulers, message hub,
    meta with seed and dataset_meta, a numpy best score from save_best)."""
    tmp = tmp_path_factory.mktemp('ckpt')
    cfg = Config.fromfile(write_toy_config(tmp / 'toy_cfg.py', work_dir=tmp / 'work'))
    cfg.experiment_name = f'ckpt_safety_{uuid.uuid4().hex}'
    Runner.from_cfg(cfg).train()
    path = tmp / 'work' / 'epoch_1.pth'
    assert path.is_file()
    return str(path)


def test_mmengine_checkpoint_loads_weights_only(mmengine_ckpt, monkeypatch):
    monkeypatch.setenv('TORCH_FORCE_WEIGHTS_ONLY_LOAD', '1')
    ckpt = torch.load(mmengine_ckpt, map_location='cpu', weights_only=True)
    assert {'meta', 'state_dict', 'optimizer', 'param_schedulers', 'message_hub'} <= set(ckpt)
    assert ckpt['meta']['iter'] == 2 and ckpt['meta']['epoch'] == 1
    assert ckpt['meta']['dataset_meta']['classes'] == ('face', )
    scalars = ckpt['message_hub']['log_scalars']
    assert isinstance(scalars['train/loss'], HistoryBuffer)
    assert scalars['train/loss'].mean() > 0
    assert isinstance(ckpt['message_hub']['runtime_info']['best_score'], np.floating)
    assert len(ckpt['optimizer']['state']) == 4  # momentum buffers of the 4 parameters
    assert find_unsafe_globals(mmengine_ckpt) == []
    # the same file through mmengine's own loading path (as --resume / load_from use)
    model = ToyFaceModel()
    load_checkpoint(model, mmengine_ckpt, map_location='cpu')
    assert torch.equal(model.bbox_fc.weight, ckpt['state_dict']['bbox_fc.weight'])


def test_allowlist_is_needed_and_covers_mmengine(mmengine_ckpt):
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(mmengine_ckpt))
        with pytest.raises(pickle.UnpicklingError):
            torch.load(mmengine_ckpt, map_location='cpu', weights_only=True)
    finally:
        torch.serialization.add_safe_globals(saved)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in needed
    assert needed <= set(_global_names(SAFE_GLOBALS)), needed - set(_global_names(SAFE_GLOBALS))


@pytest.mark.parametrize('kind', ['payload', 'code', 'getattr', 'object_array'])
def test_unsafe_checkpoint_is_refused_clearly(kind, tmp_path, monkeypatch):
    # even the "unsafe" override must not turn weights-only loading off
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'executed.txt'
    evil = dict(payload=Payload(), code=CodeRunner(str(marker)), getattr=AttrGrabber(),
                object_array=np.array(['a', 1], dtype=object))[kind]
    model = ToyFaceModel()
    path = str(tmp_path / f'{kind}.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(extra=evil)), path)

    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint(ToyFaceModel(), path, map_location='cpu')
    msg = str(info.value)
    assert path in msg
    assert 'tools/model_converters' in msg and 'weights_only=True' in msg
    expected = dict(payload=f'{__name__}.Payload', code=f'{__name__}._touch',
                    getattr="getattr(<class 'mmengine.logging.history_buffer.HistoryBuffer'>, "
                    "'__init__')", object_array="dtype('O')")[kind]
    assert expected in msg
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)  # torch's error chained
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        safe_load(path)


def test_all_checkpoint_schemes_are_wrapped():
    assert CheckpointLoader._get_checkpoint_loader('/some/file.pth').__module__ == \
        'projects.retinaface.utils.checkpoint_safety'
    for prefix, loader in CheckpointLoader._schemes.items():
        assert getattr(loader, '_retinaface_safe', False), prefix
    # mmengine prints the backend name from the function name
    assert CheckpointLoader._get_checkpoint_loader('https://x/y.pth').__name__ == \
        'load_from_http'


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='can not be found'):
        load_checkpoint(ToyFaceModel(), str(tmp_path / 'nope.pth'))


def test_tools_test_refuses_unsafe_checkpoint(tmp_path):
    """The user's path: tools/test.py CONFIG EVIL.pth exits with the clear message."""
    cfg = write_toy_config(tmp_path / 'toy_cfg.py')
    marker = tmp_path / 'executed.txt'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=ToyFaceModel().state_dict(), meta=CodeRunner(str(marker))), path)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run(
        [PYTHON, osp.join(REPO_ROOT, 'tools', 'test.py'), str(cfg), str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert 'UnsafeCheckpointError' in proc.stderr
    assert f'Refusing to load checkpoint {str(path)!r}' in proc.stderr
    assert f'{__name__}._touch' in proc.stderr
    assert not marker.exists()


def test_publish_model_keeps_weights_and_plain_meta(mmengine_ckpt, tmp_path):
    """tools/model_converters/publish_model.py: a Runner checkpoint becomes a file that plain
    torch.load(weights_only=True) reads without any allowlist, with the same weights, the
    class names, no optimizer / scheduler / message hub, named with its sha256 prefix."""
    import hashlib

    from tests.helpers import load_script
    tool = load_script('tools/model_converters/publish_model.py')
    final = tool.main([mmengine_ckpt, str(tmp_path / 'toy.pth')])
    with open(final, 'rb') as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    assert osp.basename(final) == f'toy-{sha[:8]}.pth'
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        assert torch.serialization.get_unsafe_globals_in_checkpoint(mmengine_ckpt)
        assert torch.serialization.get_unsafe_globals_in_checkpoint(final) == []
        published = torch.load(final, map_location='cpu', weights_only=True)
    finally:
        torch.serialization.add_safe_globals(saved)
    original = torch.load(mmengine_ckpt, map_location='cpu', weights_only=True)
    assert set(published) == {'meta', 'state_dict'}
    assert published['state_dict'].keys() == original['state_dict'].keys()
    for key, value in original['state_dict'].items():
        assert torch.equal(published['state_dict'][key], value)
    meta = published['meta']
    assert meta['dataset_meta']['classes'] == ['face']
    assert meta['epoch'] == 1 and meta['iter'] == 2 and isinstance(meta['cfg'], str)
    model = ToyFaceModel()
    load_checkpoint(model, final, map_location='cpu')
    assert torch.equal(model.bbox_fc.weight, original['state_dict']['bbox_fc.weight'])
    # --no-hash keeps the name; a file without a state dict is refused
    assert tool.main([mmengine_ckpt, str(tmp_path / 'plain.pth'), '--no-hash']) == str(
        tmp_path / 'plain.pth')
    torch.save({'meta': {}}, str(tmp_path / 'empty.pth'))
    with pytest.raises(KeyError, match='no state_dict'):
        tool.main([str(tmp_path / 'empty.pth'), str(tmp_path / 'x.pth')])
    with pytest.raises(FileNotFoundError):
        tool.main([str(tmp_path / 'missing.pth'), str(tmp_path / 'x.pth')])
