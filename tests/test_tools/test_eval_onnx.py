"""tools/deployment/eval_onnx.py on the real shared data: the published MobileNet-0.25 weights,
exported to ONNX, give the WIDER val AP the README reports on the 11 shared val images."""
import numpy as np
import torch

from tests.fixtures_weights import MNET_CONFIG, MNET_PTH, converter_module
from tests.helpers import load_script, requires_shared, shared_path

pytestmark = requires_shared('weights', 'mobilenet0.25_Final.pth')
p2o = load_script('tools/deployment/pytorch2onnx.py', 'rf_eval_p2o')
tool = load_script('tools/deployment/eval_onnx.py', 'rf_eval_onnx')


@requires_shared('data', 'widerface', 'eval_ground_truth', 'wider_face_val.mat')
@requires_shared('data', 'widerface', 'retinaface_gt', 'train', 'label.txt')
def test_eval_onnx_reports_the_published_weights_ap(tmp_path, capsys):
    src = torch.load(str(shared_path(*MNET_PTH)), map_location='cpu', weights_only=True)
    model, cfg = p2o.build_model(str(MNET_CONFIG), None)
    model.load_state_dict(converter_module().convert_state_dict(src, 'mnet'), strict=True)
    onnx_file = p2o.export_onnx(model.eval(), cfg, str(tmp_path / 'fp32.onnx'))
    assert tool.main([onnx_file, onnx_file, '--num-train', '20', '--num-calib', '8',
                      '--threads', '1', '--data-root', str(shared_path('data', 'widerface'))]) == 0
    out = capsys.readouterr()
    assert 'val: 11/11 images' in out.err and 'train: 20/20 images' in out.err  # progress
    rows = [line for line in out.out.splitlines() if line.startswith('| fp32.onnx')]
    assert len(rows) == 2
    base = [float(c.split()[0]) for c in rows[0].strip('| ').split(' | ')[1:]]
    # README "ONNX export": 100.00 / 92.92 / 92.22 on the 11 shared val images
    np.testing.assert_allclose(base[:3], [100.00, 92.92, 92.22], atol=0.005)
    assert 0 < base[3] <= 100
    assert all('(+0.00)' in c for c in rows[1].strip('| ').split(' | ')[1:])
