"""End to end: demo/image_demo.py and tools/misc/face_crops.py with the toy face detector."""
import json
import subprocess

import cv2
import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config

from projects.retinaface.apis import head_boxes
from projects.retinaface.visualization import LANDMARK_COLORS
from tests.helpers import PYTHON, REPO_ROOT, load_script
from tests.test_apis.toy_face_detector import ToyFaceDetector, toy_config, toy_predictions


def write_video(path, frames, fps=5):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps, (w, h))
    if not writer.isOpened():
        pytest.skip('OpenCV cannot write mp4 videos here')
    for frame in frames:
        writer.write(frame)
    writer.release()


def read_video(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def test_demo_images_from_folder(toy_files, tmp_path):
    demo = load_script('demo/image_demo.py')
    folder = tmp_path / 'imgs'
    folder.mkdir()
    shapes = {'a': (90, 120), 'b': (64, 50)}
    for name, (h, w) in shapes.items():
        mmcv.imwrite(np.full((h, w, 3), 40, np.uint8), str(folder / f'{name}.png'))
    out = tmp_path / 'out'
    demo.main([str(folder), str(toy_files / 'cfg.py'), '--weights', str(toy_files / 'ckpt.pth'),
               '--out-dir', str(out), '--device', 'cpu', '--pred-score-thr', '0.3'])
    for name, (h, w) in shapes.items():
        expected = toy_predictions(h, w)
        pred = json.loads((out / 'preds' / f'{name}.json').read_text())
        np.testing.assert_allclose(pred['keypoints'], expected['keypoints'].numpy(), atol=1e-3)
        np.testing.assert_allclose(pred['bboxes'], expected['bboxes'].numpy(), atol=1e-3)
        vis = mmcv.imread(str(out / 'vis' / f'{name}.png'), channel_order='rgb')
        assert vis.shape == (h, w, 3)
        x, y = expected['keypoints'][0, 2].tolist()  # nose of the face above the threshold
        assert tuple(vis[int(y), int(x)]) == LANDMARK_COLORS[2]


def test_demo_video(toy_files, tmp_path):
    demo = load_script('demo/image_demo.py')
    frames = [np.full((48, 64, 3), v, np.uint8) for v in (20, 40, 60)]
    write_video(tmp_path / 'clip.mp4', frames)
    out = tmp_path / 'out'
    demo.main([str(tmp_path / 'clip.mp4'), str(toy_files / 'cfg.py'), '--weights',
               str(toy_files / 'ckpt.pth'), '--out-dir', str(out), '--device', 'cpu',
               '--save-frames'])
    preds = json.loads((out / 'preds' / 'clip.json').read_text())
    assert [f['frame'] for f in preds['frames']] == [0, 1, 2]
    expected = toy_predictions(48, 64)['keypoints'].numpy()
    for frame in preds['frames']:
        np.testing.assert_allclose(frame['keypoints'], expected, atol=1e-3)
    drawn = read_video(out / 'vis' / 'clip.mp4')
    assert len(drawn) == 3 and drawn[0].shape == (48, 64, 3)
    assert sorted(p.name for p in (out / 'vis' / 'clip').iterdir()) == [
        '000000.jpg', '000001.jpg', '000002.jpg']
    # The left eye (red) is drawn in the saved frames, in the right colour order (BGR on disk).
    frame = mmcv.imread(str(out / 'vis' / 'clip' / '000001.jpg'))
    x, y = expected[0, 0]
    b, g, r = (int(v) for v in frame[int(y), int(x)])
    assert r - max(g, b) > 60, (b, g, r)


def test_demo_runs_from_another_cwd(toy_files, tmp_path):
    out = tmp_path / 'out'
    proc = subprocess.run(
        [PYTHON, str(REPO_ROOT / 'demo' / 'image_demo.py'), str(toy_files / 'face.png'),
         str(toy_files / 'cfg.py'), '--weights', str(toy_files / 'ckpt.pth'), '--out-dir',
         str(out), '--device', 'cpu'],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pred = json.loads((out / 'preds' / 'face.json').read_text())
    assert len(pred['keypoints']) == 2 and len(pred['keypoints'][0]) == 5
    assert (out / 'vis' / 'face.png').is_file()


def test_face_crops_tool(toy_files, tmp_path):
    tool = load_script('tools/misc/face_crops.py')
    folder = tmp_path / 'imgs'
    (folder / 'sub').mkdir(parents=True)
    rng = np.random.default_rng(0)
    mmcv.imwrite(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8), str(folder / 'a.png'))
    mmcv.imwrite(rng.integers(0, 255, (64, 50, 3), dtype=np.uint8), str(folder / 'sub' / 'b.jpg'))
    out = tmp_path / 'crops'
    tool.main([str(toy_files / 'cfg.py'), str(toy_files / 'ckpt.pth'), str(folder), str(out),
               '--kind', 'all', '--score-thr', '0.5', '--device', 'cpu'])
    index = json.loads((out / 'index.json').read_text())
    assert [osp_name(e['img_path']) for e in index['images']] == ['a.png', 'b.jpg']
    for entry in index['images']:
        h, w = entry['height'], entry['width']
        expected = toy_predictions(h, w)
        assert len(entry['faces']) == 1  # the 0.2-score face is below --score-thr
        face = entry['faces'][0]
        np.testing.assert_allclose(face['bbox'], expected['bboxes'][0].numpy(), atol=0.01)
        np.testing.assert_allclose(face['keypoints'], expected['keypoints'][0].numpy(),
                                   atol=0.01)
        head = head_boxes(expected['bboxes'][0].numpy(), img_shape=(h, w))[0]
        np.testing.assert_allclose(face['head']['box'], head, atol=0.01)
        head_crop = mmcv.imread(str(out / face['head']['file']))
        x1, y1, x2, y2 = np.floor(head[0]), np.floor(head[1]), np.ceil(head[2]), np.ceil(head[3])
        assert head_crop.shape == (y2 - y1, x2 - x1, 3)
        assert mmcv.imread(str(out / face['face']['file'])) is not None
        aligned = mmcv.imread(str(out / face['aligned']['file']))
        assert aligned.shape == (112, 112, 3)
    assert (out / 'head' / 'sub__b_0.jpg').is_file()


def test_face_crops_unique_output_names(tmp_path):
    """Images sharing a stem (a.jpg, a.png) must not overwrite each other's crops."""
    tool = load_script('tools/misc/face_crops.py')
    for name in ('a.jpg', 'a.png', 'b.jpg', 'a_jpg.png'):
        (tmp_path / name).write_bytes(b'')
    stems = dict((osp_name(p), s) for p, s in tool.list_images(str(tmp_path)))
    # clashing stems get their extension; a stem that then clashes again gets a counter
    assert stems == {'a.jpg': 'a_jpg', 'a.png': 'a_png', 'a_jpg.png': 'a_jpg_1', 'b.jpg': 'b'}


def osp_name(path):
    return path.replace('\\', '/').rsplit('/', 1)[-1]


def test_face_crops_skips_unreadable_images_of_a_folder(toy_files, tmp_path):
    """A corrupt file in a folder is skipped, listed in index.json and the other images are
    cropped; given alone, the same file is an error."""
    tool = load_script('tools/misc/face_crops.py')
    folder = tmp_path / 'imgs'
    folder.mkdir()
    mmcv.imwrite(np.full((90, 120, 3), 40, np.uint8), str(folder / 'a.png'))
    (folder / 'b.jpg').write_bytes(b'not an image')
    out = tmp_path / 'crops'
    args = [str(toy_files / 'cfg.py'), str(toy_files / 'ckpt.pth')]
    index = tool.main(args + [str(folder), str(out), '--kind', 'face', '--device', 'cpu'])
    assert [osp_name(e['img_path']) for e in index['images']] == ['a.png']
    assert len(index['images'][0]['faces']) == 1
    assert [osp_name(s['img_path']) for s in index['skipped']] == ['b.jpg']
    saved = json.loads((out / 'index.json').read_text())
    assert saved['skipped'] == index['skipped']
    with pytest.raises(IOError, match='cannot decode'):
        tool.main(args + [str(folder / 'b.jpg'), str(tmp_path / 'c'), '--device', 'cpu'])


def test_demo_video_cut_short_is_reported(toy_files, tmp_path):
    """A truncated AVI opens and announces all its frames, but OpenCV stops reading early
    without an error: the demo says how many frames it read of how many announced."""
    demo = load_script('demo/image_demo.py')
    path = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 5, (64, 48))
    if not writer.isOpened():
        pytest.skip('OpenCV cannot write MJPG videos here')
    for i in range(10):
        writer.write(np.random.RandomState(i).randint(0, 255, (48, 64, 3)).astype(np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * 0.6)])
    read = len(read_video(path))
    assert 0 < read < 10
    out = tmp_path / 'out'
    demo.main([str(path), str(toy_files / 'cfg.py'), '--weights', str(toy_files / 'ckpt.pth'),
               '--out-dir', str(out), '--device', 'cpu', '--no-save-vis'])
    preds = json.loads((out / 'preds' / 'clip.json').read_text())
    assert preds['frames_announced'] == 10 and preds['frames_read'] == read
    assert [f['frame'] for f in preds['frames']] == list(range(read))
    # nothing decodable at all is an error, not an empty result
    empty = tmp_path / 'empty.avi'
    empty.write_bytes(data[:200])
    with pytest.raises(RuntimeError, match='empty.avi'):
        demo.main([str(empty), str(toy_files / 'cfg.py'), '--weights',
                   str(toy_files / 'ckpt.pth'), '--out-dir', str(out), '--device', 'cpu'])


def test_webcam_demo_on_a_stream(toy_files, tmp_path):
    """The webcam demo takes a stream (here a video file) for --camera-id; headless, it writes
    the drawn frames and the predictions of each frame."""
    demo = load_script('demo/webcam_demo.py')
    frames = [np.full((48, 64, 3), v, np.uint8) for v in (20, 40, 60, 80)]
    write_video(tmp_path / 'stream.mp4', frames)
    out = tmp_path / 'out'
    result = demo.main([str(toy_files / 'cfg.py'), str(toy_files / 'ckpt.pth'), '--camera-id',
                        str(tmp_path / 'stream.mp4'), '--no-show', '--out-dir', str(out),
                        '--max-frames', '3'])
    expected = toy_predictions(48, 64)['keypoints'].numpy()
    assert [f['frame'] for f in result] == [0, 1, 2]
    preds = json.loads((out / 'preds' / 'stream.json').read_text())
    assert preds['frames_read'] == 3 and preds['frames_announced'] == 4
    for frame in preds['frames']:
        np.testing.assert_allclose(frame['keypoints'], expected, atol=1e-3)
    drawn = read_video(out / 'vis' / 'stream.mp4')
    assert len(drawn) == 3 and drawn[0].shape == (48, 64, 3)


def test_webcam_demo_score_thr_and_colours_from_the_config(tmp_path):
    """--score-thr replaces the config's test score threshold: the face scoring 0.2 is neither
    drawn nor in the JSON (with the config's own 0.02 it would be in the JSON). The landmark
    colours are the config's visualiser's."""
    demo = load_script('demo/webcam_demo.py')
    cfg = Config(toy_config(test_cfg=dict(score_thr=0.02)))
    # the frames are drawn in the landmark colours of the config's visualiser
    cfg.visualizer = dict(type='FaceLocalVisualizer', name='toy_green',
                          landmark_colors=[(0, 255, 0)])
    cfg.dump(str(tmp_path / 'cfg.py'))
    torch.save({'state_dict': ToyFaceDetector().state_dict(), 'meta': {}},
               str(tmp_path / 'ckpt.pth'))
    write_video(tmp_path / 'stream.mp4', [np.full((48, 64, 3), 30, np.uint8)] * 2)
    args = [str(tmp_path / 'cfg.py'), str(tmp_path / 'ckpt.pth'), '--camera-id',
            str(tmp_path / 'stream.mp4'), '--no-show', '--out-dir', str(tmp_path / 'out')]
    for thr, scores in (('0.5', [0.9]), ('0.1', [0.9, 0.2])):
        frames = demo.main(args + ['--score-thr', thr])
        assert [np.round(f['scores'], 4).tolist() for f in frames] == [scores, scores]
    drawn = read_video(tmp_path / 'out' / 'vis' / 'stream.mp4')[0]
    x, y = toy_predictions(48, 64)['keypoints'][0, 0].tolist()  # left eye: red by default
    b, g, r = (int(v) for v in drawn[int(y), int(x)])
    assert g - max(b, r) > 60, (b, g, r)


def test_webcam_demo_errors(toy_files, tmp_path, monkeypatch):
    demo = load_script('demo/webcam_demo.py')
    args = [str(toy_files / 'cfg.py'), str(toy_files / 'ckpt.pth')]
    with pytest.raises(RuntimeError, match='cannot open camera 99'):
        demo.main(args + ['--camera-id', '99', '--no-show', '--out-dir', str(tmp_path)])
    with pytest.raises(FileNotFoundError, match='video not found'):
        demo.main(args + ['--camera-id', str(tmp_path / 'missing.mp4'), '--no-show',
                          '--out-dir', str(tmp_path)])
    monkeypatch.delenv('DISPLAY', raising=False)
    monkeypatch.delenv('WAYLAND_DISPLAY', raising=False)
    with pytest.raises(RuntimeError, match='--no-show'):
        demo.main(args)
    with pytest.raises(SystemExit):  # nothing would be shown, written or printed
        demo.main(args + ['--no-show'])
