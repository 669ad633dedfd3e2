"""The code base passes the project's ruff configuration (pyproject.toml)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT


def _ruff():
    venv_ruff = Path(sys.executable).with_name('ruff')
    return str(venv_ruff) if venv_ruff.exists() else shutil.which('ruff')


@pytest.mark.skipif(_ruff() is None, reason='ruff is not installed (requirements/tests.txt)')
def test_ruff_check_passes():
    proc = subprocess.run([_ruff(), 'check', '--no-cache', '.'], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
