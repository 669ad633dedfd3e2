"""Utilities. Importing this package installs safe (weights-only) checkpoint loading."""
from .checkpoint_safety import (
    SAFE_GLOBALS,
    UnsafeCheckpointError,
    find_unsafe_globals,
    install,
    load_from_local,
    safe_load,
)
from .dist_env import setup_cpu_distributed, teardown_distributed
from .image_io import image_load_failure

install()

__all__ = [
    'SAFE_GLOBALS', 'UnsafeCheckpointError', 'find_unsafe_globals', 'image_load_failure', 'install',
    'load_from_local', 'safe_load', 'setup_cpu_distributed', 'teardown_distributed'
]
