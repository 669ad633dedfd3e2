"""End-to-end tests: the user-level commands and every shipped config, run together."""
from tests.helpers import load_script


def load_tool(rel_path):
    """Import a script under ``tools/`` (not a package) as a module."""
    return load_script(rel_path, 'rf_integration_' + rel_path.replace('/', '_')[:-3])
