"""Live face detection from a camera (or a stream URL): boxes, scores and five landmarks.

Examples::

    python demo/webcam_demo.py CONFIG CKPT                      # camera 0, in a window
    python demo/webcam_demo.py CONFIG CKPT --camera-id 1 --score-thr 0.6
    python demo/webcam_demo.py CONFIG CKPT --camera-id rtsp://host/stream --no-show \\
        --out-dir outputs --max-frames 300                     # headless: video + JSON

``q`` or Esc in the window stops it. ``--score-thr`` also replaces the config's test score
threshold (0.02, the WIDER protocol), so that NMS and the JSON see only the faces worth showing.
With ``--out-dir`` the drawn frames are written to ``OUT_DIR/vis/<name>.mp4`` and the
predictions of every frame (original pixels) to ``OUT_DIR/preds/<name>.json`` (``<name>``:
``camera<id>`` or the stream's stem). A progress line counts the frames and shows the frame
rate. Without a display, ``--no-show`` is needed. The loop is
:func:`projects.retinaface.apis.detect_video`, shared with ``demo/image_demo.py``.
"""
import os.path as osp
import sys
from argparse import ArgumentParser

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def parse_args(argv=None):
    parser = ArgumentParser(description='RetinaFace webcam demo')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--device', default=None, help='device, e.g. cpu or cuda:0 (default: cuda:0 if '
        'available, else cpu)')
    parser.add_argument('--camera-id', default='0',
                        help='camera index, or a video stream URL / file')
    parser.add_argument('--score-thr', type=float, default=0.5,
                        help='faces below this score are neither drawn nor saved (it also '
                        "becomes the model's test_cfg.score_thr, which saves NMS work)")
    parser.add_argument('--out-dir', default=None,
                        help='write the drawn video and per-frame JSON here')
    parser.add_argument('--max-frames', type=int, default=None, help='stop after N frames')
    parser.add_argument('--no-show', action='store_true', help='do not open a window')
    parser.add_argument('--print-result', action='store_true', help='print the predictions')
    args = parser.parse_args(argv)
    if args.no_show and not args.out_dir and not args.print_result:
        parser.error('--no-show without --out-dir or --print-result would show nothing')
    return args


def main(argv=None):
    args = parse_args(argv)
    import torch
    from mmengine.config import Config

    from projects.retinaface.apis import FaceInferencer, detect_video, open_capture
    from projects.retinaface.apis.video import has_display

    if not args.no_show and not has_display():
        raise RuntimeError('no display to show the frames in (DISPLAY or WAYLAND_DISPLAY is not '
                           'set): pass --no-show with --out-dir DIR')
    for path, what in ((args.config, 'config'), (args.checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} not found: {path}')
    open_capture(args.camera_id).release()  # fail on a missing camera before loading the model
    device = args.device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    cfg = Config.fromfile(args.config)
    if cfg.model.get('test_cfg', None) is not None and 'score_thr' in cfg.model.test_cfg:
        cfg.model.test_cfg.score_thr = args.score_thr
    inferencer = FaceInferencer(model=cfg, weights=args.checkpoint, device=device,
                                show_progress=False)
    return detect_video(
        inferencer,
        args.camera_id,
        out_dir=args.out_dir,
        pred_score_thr=args.score_thr,
        show=not args.no_show,
        max_frames=args.max_frames,
        print_result=args.print_result)


if __name__ == '__main__':
    main()
