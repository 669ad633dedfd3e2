"""Fixtures of the API tests: a tiny face detector config and checkpoint (see toy_face_detector)."""
import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config

from tests.test_apis.toy_face_detector import ToyFaceDetector, toy_config

TOY_IMAGE_SHAPE = (90, 120)
TOY_BACKGROUND = 40


@pytest.fixture(scope='session')
def toy_files(tmp_path_factory):
    """Folder with ``cfg.py`` (toy detector, predicts vertices too), ``ckpt.pth`` (no class
    names in its meta, like converted weights) and ``face.png`` (uniform grey 90x120)."""
    root = tmp_path_factory.mktemp('toy')
    Config(toy_config(with_vertices=True)).dump(str(root / 'cfg.py'))
    model = ToyFaceDetector()
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, str(root / 'ckpt.pth'))
    img = np.full(TOY_IMAGE_SHAPE + (3, ), TOY_BACKGROUND, np.uint8)
    mmcv.imwrite(img, str(root / 'face.png'))
    return root
