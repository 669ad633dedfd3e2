"""Why an image file cannot be loaded, checked the way mmcv's ``LoadImageFromFile`` loads it."""
from typing import Optional

import mmcv
from mmengine.fileio import get


def image_load_failure(path: str, backend_args: Optional[dict] = None) -> Optional[str]:
    """The reason ``path`` cannot be loaded as an image (missing, unreadable, or bytes that do
    not decode: ``cv2.imdecode`` gives no image for a JPEG cut short), or ``None`` when it
    loads. Reads the file with ``mmengine.fileio.get`` and decodes it with
    ``mmcv.imfrombytes``, as ``LoadImageFromFile`` does."""
    try:
        img = mmcv.imfrombytes(get(path, backend_args=backend_args))
    except Exception as e:
        return f'{type(e).__name__}: {e}'
    return 'the file cannot be decoded' if img is None else None
