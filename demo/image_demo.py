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
count; fewer frames read, as from a truncated file, also gives a warning).
"""
import logging
import os
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


def run_video(inferencer, args):
    """Detect faces frame by frame; write an annotated video and per-frame predictions."""
    import cv2
    import mmengine
    from mmengine.logging import print_log

    cap = cv2.VideoCapture(args.inputs)
    if not cap.isOpened():
        raise RuntimeError(f'cannot open the video {args.inputs}')
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    announced = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
    total = announced
    if args.max_frames is not None:
        total = min(total, args.max_frames) if total > 0 else args.max_frames
    stem = osp.splitext(osp.basename(args.inputs))[0]
    vis_dir = osp.join(args.out_dir, 'vis')
    frames_dir = osp.join(vis_dir, stem)
    writer = None
    frames = []
    progress = mmengine.ProgressBar(total) if total > 0 else None
    index = 0
    try:
        while args.max_frames is None or index < args.max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            sample = inferencer(frame, return_datasamples=True)['predictions'][0]
            inferencer.visualizer.add_datasample(
                f'{stem}_{index:06d}',
                frame[..., ::-1],
                sample,
                draw_gt=False,
                show=args.show,
                wait_time=1e-3,
                pred_score_thr=args.pred_score_thr,
                out_file=None)
            drawn = inferencer.visualizer.get_image()[..., ::-1]  # RGB -> BGR
            if not args.no_save_vis:
                if writer is None:
                    os.makedirs(vis_dir, exist_ok=True)
                    h, w = drawn.shape[:2]
                    writer = cv2.VideoWriter(
                        osp.join(vis_dir, stem + '.mp4'), cv2.VideoWriter_fourcc(*'mp4v'), fps,
                        (w, h))
                writer.write(drawn.copy())
                if args.save_frames:
                    os.makedirs(frames_dir, exist_ok=True)
                    cv2.imwrite(osp.join(frames_dir, f'{index:06d}.jpg'), drawn)
            pred = inferencer.pred2dict(sample)
            pred['frame'] = index
            frames.append(pred)
            if args.print_result:
                print(pred)
            if progress is not None:
                progress.update()
            index += 1
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if index == 0 and args.max_frames != 0:
        raise RuntimeError(f'no frame of the video {args.inputs} could be decoded')
    if index < total:  # a truncated or damaged file ends early without an error from OpenCV
        print_log(f'{args.inputs}: read {index} of the {total} frames the file announces; the '
                  'rest could not be decoded (a truncated or damaged file?)', logger='current',
                  level=logging.WARNING)
    if not args.no_save_pred:
        mmengine.dump(
            dict(video=args.inputs, fps=fps, frames_announced=announced, frames_read=index,
                 frames=frames),
            osp.join(args.out_dir, 'preds', stem + '.json'))
    return frames


def main(argv=None):
    args = parse_args(argv)
    import torch
    from mmengine.logging import print_log

    from projects.retinaface.apis import FaceInferencer

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
        results = run_video(inferencer, args)
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
