"""Small test helpers shared by the test suite (mmdet.testing assumes an mmdet source checkout)."""
import importlib.util
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The shared data folder sits beside the repository; RETINAFACE_SHARED overrides it.
SHARED_DIR = Path(os.environ.get('RETINAFACE_SHARED', REPO_ROOT.parent / 'shared')).resolve()
_VENV_PYTHON = REPO_ROOT / '.venv' / 'bin' / 'python'
PYTHON = str(_VENV_PYTHON) if _VENV_PYTHON.exists() else 'python'


def shared_path(*parts):
    """Path inside ../shared (may not exist)."""
    return SHARED_DIR.joinpath(*parts)


def requires_shared(*parts):
    """Skip marker for tests reading ``../shared/<parts>``; the reason names what is missing."""
    path = shared_path(*parts)
    return pytest.mark.skipif(
        not path.exists(),
        reason=f'needs the shared data file {path} (absent: ../shared is not beside this checkout)')


def load_config(rel_path):
    """Load a repository config by path relative to the repo root."""
    from mmengine.config import Config
    return Config.fromfile(str(REPO_ROOT / rel_path))


def load_script(rel_path, name=None):
    """Import a script that is not in a package (``tools/...``, ``demo/...``) as a module.

    ``rel_path`` is relative to the repository root (an absolute path works too); each call
    executes the file afresh and does not register it in ``sys.modules``.
    """
    path = REPO_ROOT / rel_path
    if name is None:
        name = 'rf_' + str(rel_path).replace(os.sep, '_').replace('/', '_').rsplit('.', 1)[0]
    spec = importlib.util.spec_from_file_location(name, str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
