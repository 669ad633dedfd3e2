"""Helpers for the tests that use the real reference weights in ``../shared/weights``.

The converted MobileNet-0.25 checkpoint is made once per test session (the conversion takes about
a second) in a temporary folder: :func:`converted_mnet_checkpoint`. Test modules wrap it in their
own session fixtures, e.g.::

    @pytest.fixture(scope='session')
    def mnet_ckpt(tmp_path_factory):
        return converted_mnet_checkpoint(tmp_path_factory)
"""
from pathlib import Path

from tests.helpers import REPO_ROOT, load_script, shared_path

CONVERTER = REPO_ROOT / 'tools' / 'model_converters' / 'pytorch_retinaface_to_mmdet.py'
MNET_PTH = ('weights', 'mobilenet0.25_Final.pth')
MNET_ONNX = ('weights', 'mobilenet0.25_Final.onnx')
PHOTOS = ('photos', )
MNET_CONFIG = REPO_ROOT / 'configs' / 'retinaface_mnet025_fpn.py'
MNET_FIXED640_CONFIG = REPO_ROOT / 'configs' / 'test_modes' / 'retinaface_mnet025_fpn_fixed640.py'

_cache = {}


def converter_module():
    """The converter tool imported as a module (it lives outside any package)."""
    if 'module' not in _cache:
        _cache['module'] = load_script(CONVERTER, 'pytorch_retinaface_to_mmdet')
    return _cache['module']


def converted_mnet_checkpoint(tmp_path_factory) -> Path:
    """Convert ``../shared/weights/mobilenet0.25_Final.pth`` once per session with the tool's
    ``main()``; returns the checkpoint path."""
    if 'mnet' not in _cache:
        dst = tmp_path_factory.mktemp('converted') / 'retinaface_mnet025_reference.pth'
        rc = converter_module().main([str(shared_path(*MNET_PTH)), str(dst), '--arch', 'mnet'])
        assert rc == 0 and dst.is_file()
        _cache['mnet'] = dst
    return _cache['mnet']


def shared_photos():
    """Sorted paths of the photos in ``../shared/photos`` (empty when absent)."""
    folder = shared_path(*PHOTOS)
    return sorted(folder.glob('*.jpg')) if folder.is_dir() else []
