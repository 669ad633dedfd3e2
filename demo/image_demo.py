"""Face detection demo: boxes, scores and five landmarks on images, folders or videos.

Examples::

    python demo/image_demo.py photo.jpg CONFIG --weights CKPT --device cpu
    python demo/image_demo.py photos/ CONFIG --weights CKPT --out-dir outputs
    python demo/image_demo.py clip.mp4 CONFIG --weights CKPT --save-frames

Images and folders go through :class:`FaceInferencer`: annotated images are written to
``OUT_DIR/vis/<name>`` and predictions (labels, scores, bboxes, keypoints and vertices when
predicted, in original-image pixels) to ``OUT_DIR/preds/<stem>.json``. A video is read frame by
frame with OpenCV: ``OUT_DIR/vis/<stem>.mp4`` is the annotated video (``--save-frames`` also
writes ``OUT_DIR/vis/<stem>/<frame>.jpg``) and ``OUT_DIR/preds/<stem>.json`` lists the
predictions per frame, with ``frames_read`` and ``frames_announced`` (the container's frame
count; fewer frames read, as from a truncated file, also gives a warning). The frame loop is
:func:`projects.retinaface.apis.detect_video`, shared with ``demo/webcam_demo.py``.
"""
import logging
import os.path as osp
import sys
from argparse import ArgumentParser

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.wmv')


def parse_args(argv=None):
    parser = ArgumentParser(description='RetinaFace demo (images, folders, videos)')
    parser.add_argument('inputs', help='image file, folder of images, or video file')
    parser.add_argument('model', help='config file')
    parser.add_argument('--weights', default=None, help='checkpoint file')
    parser.add_argument('--out-dir', default='outputs', help='output directory')
    parser.add_argument(
        '--device', default=None, help='device, e.g. cpu or cuda:0 (default: cuda:0 if '
        'available, else cpu)')
    parser.add_argument(
        '--pred-score-thr', type=float, default=0.3, help='minimum score of faces to draw')
    parser.add_argument('--batch-size', type=int, default=1, help='inference batch size')
    parser.add_argument('--show', action='store_true', help='display the results in a window')
    parser.add_argument('--no-save-vis', action='store_true', help='do not save drawn images')
    parser.add_argument('--no-save-pred', action='store_true', help='do not save predictions')
    parser.add_argument('--print-result', action='store_true', help='print the predictions')
    parser.add_argument('--palette', default='none', help='box colour palette')
    parser.add_argument(
        '--save-frames', action='store_true', help='video input: also save annotated frames')
    parser.add_argument(
        '--max-frames', type=int, default=None, help='video input: stop after N frames')
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error('--batch-size must be >= 1')
    return args


def is_video(path):
    return osp.isfile(path) and osp.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def main(argv=None):
    args = parse_args(argv)
    import torch
    from mmengine.logging import print_log

    from projects.retinaface.apis import FaceInferencer, detect_video

    if not osp.exists(args.inputs):
        raise FileNotFoundError(f'input not found: {args.inputs}')
    if not osp.isfile(args.model):
        raise FileNotFoundError(f'config not found: {args.model}')
    if args.weights is None:
        print_log('no --weights given: the model is randomly initialised',
                  level=logging.WARNING)
    elif not osp.isfile(args.weights):
        raise FileNotFoundError(f'checkpoint not found: {args.weights}')
    device = args.device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    video = is_video(args.inputs)
    inferencer = FaceInferencer(
        model=args.model,
        weights=args.weights,
        device=device,
        palette=args.palette,
        show_progress=not video)

    if video:
        results = detect_video(
            inferencer,
            args.inputs,
            out_dir=args.out_dir,
            pred_score_thr=args.pred_score_thr,
            show=args.show,
            save_vis=not args.no_save_vis,
            save_pred=not args.no_save_pred,
            save_frames=args.save_frames,
            max_frames=args.max_frames,
            print_result=args.print_result)
    else:
        results = inferencer(
            args.inputs,
            batch_size=args.batch_size,
            show=args.show,
            pred_score_thr=args.pred_score_thr,
            no_save_vis=args.no_save_vis,
            no_save_pred=args.no_save_pred,
            print_result=args.print_result,
            out_dir=args.out_dir)['predictions']
    if args.out_dir and not (args.no_save_vis and args.no_save_pred):
        print_log(f'results have been saved at {osp.abspath(args.out_dir)}')
    return results


if __name__ == '__main__':
    main()
