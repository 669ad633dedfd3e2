"""mmdet's ``DetVisualizationHook`` that leaves out images whose file could not be read."""
from typing import Sequence

from mmdet.engine.hooks import DetVisualizationHook
from mmdet.registry import HOOKS
from mmengine.logging import print_log


def _unreadable(data_sample) -> bool:
    return bool(data_sample.metainfo.get('img_unreadable', False))


@HOOKS.register_module()
class FaceVisualizationHook(DetVisualizationHook):
    """``DetVisualizationHook`` (``tools/test.py --show / --show-dir``) that skips, with a
    warning, the data samples of files that could not be read.

    mmdet's hook reads every drawn image again from its file and fails on one that does not
    decode, after the dataset has already stood a placeholder in for it (``img_unreadable``,
    see ``WIDERFaceDataset``'s ``undecodable_images``). This hook draws the other samples as
    mmdet's does. Arguments are those of ``DetVisualizationHook``.
    """

    def _warn(self, data_sample) -> None:
        print_log(f'FaceVisualizationHook: nothing drawn for {data_sample.img_path}: the file '
                  'could not be read', logger='current', level=30)

    def after_val_iter(self, runner, batch_idx: int, data_batch: dict,
                       outputs: Sequence) -> None:
        if self.draw and outputs and _unreadable(outputs[0]):
            self._warn(outputs[0])
            return
        super().after_val_iter(runner, batch_idx, data_batch, outputs)

    def after_test_iter(self, runner, batch_idx: int, data_batch: dict,
                        outputs: Sequence) -> None:
        if not self.draw:
            return
        readable = []
        for data_sample in outputs:
            if _unreadable(data_sample):
                self._test_index += 1  # keep the steps of the other images
                self._warn(data_sample)
            else:
                readable.append(data_sample)
        super().after_test_iter(runner, batch_idx, data_batch, readable)
