"""End-to-end tests: the user-level commands and every shipped config, run together."""
import importlib.util

from tests.helpers import REPO_ROOT


def load_tool(rel_path):
    """Import a script under ``tools/`` (not a package) as a module."""
    path = REPO_ROOT / rel_path
    name = 'rf_integration_' + rel_path.replace('/', '_')[:-3]
    spec = importlib.util.spec_from_file_location(name, str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
