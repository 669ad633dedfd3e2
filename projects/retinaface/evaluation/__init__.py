from . import functional  # noqa: F401
from . import metrics  # noqa: F401
