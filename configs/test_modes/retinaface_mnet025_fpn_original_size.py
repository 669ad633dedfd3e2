# Test-mode variant of configs/retinaface_mnet025_fpn.py:
# see configs/_base_/test_modes/original_size.py.
#   python tools/test.py configs/test_modes/retinaface_mnet025_fpn_original_size.py CHECKPOINT
_base_ = ['../retinaface_mnet025_fpn.py', '../_base_/test_modes/original_size.py']

val_dataloader = dict(dataset=dict(pipeline={{_base_.test_mode_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_mode_pipeline}}))
model = dict(test_cfg={{_base_.test_mode_cfg}})
