"""Faces in a stream of frames: a video file, a camera or a stream URL.

:func:`detect_video` runs a :class:`FaceInferencer` frame by frame, draws boxes, scores and the
five landmarks with OpenCV (:func:`~projects.retinaface.visualization.draw_faces`, in the landmark
colours of the inferencer's visualiser: about a millisecond per frame, where the visualiser's
matplotlib drawing takes hundreds), and optionally shows the drawn frames in a window, writes
them as a video (and as JPEG files) and dumps the predictions of every frame as JSON. It is the
loop of ``demo/image_demo.py`` (video files) and ``demo/webcam_demo.py`` (cameras).
"""
import logging
import os
import os.path as osp
import sys
from typing import List, Optional, Union

import cv2
import mmengine
from mmengine.logging import print_log

from ..visualization import LANDMARK_COLORS, draw_faces

#: Keys that stop :func:`detect_video` when its window has the focus: ``q``, ``Q``, Esc.
QUIT_KEYS = (ord('q'), ord('Q'), 27)


def has_display() -> bool:
    """Whether an OpenCV window can open (on Linux: an X11 or Wayland display is set)."""
    if not sys.platform.startswith('linux'):
        return True
    return bool(os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY'))


def _as_source(source: Union[int, str]) -> Union[int, str]:
    """A camera index as ``int`` (also when given as a string of digits); other sources as is."""
    return int(source) if isinstance(source, str) and source.isdigit() else source


def open_capture(source: Union[int, str]) -> cv2.VideoCapture:
    """Open a camera (an index, as ``int`` or a string of digits), a video file or a stream URL;
    raise a clear error when it cannot be opened."""
    source = _as_source(source)
    if isinstance(source, str) and '://' not in source and not osp.isfile(source):
        raise FileNotFoundError(f'video not found: {source}')
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        what = f'camera {source}' if isinstance(source, int) else f'the video {source}'
        raise RuntimeError(f'cannot open {what}')
    return cap


def detect_video(inferencer,
                 source: Union[int, str],
                 out_dir: Optional[str] = None,
                 name: Optional[str] = None,
                 pred_score_thr: float = 0.3,
                 show: bool = False,
                 save_vis: bool = True,
                 save_pred: bool = True,
                 save_frames: bool = False,
                 max_frames: Optional[int] = None,
                 print_result: bool = False) -> List[dict]:
    """Detect faces in every frame of ``source`` until it ends, ``max_frames`` are read, or a
    quit key (``q`` or Esc) is pressed in the window.

    Args:
        inferencer (FaceInferencer): Model and pipeline.
        source (int | str): Camera index, video file or stream URL (see :func:`open_capture`).
        out_dir (str, optional): Where to write ``vis/<name>.mp4`` (the drawn frames),
            ``vis/<name>/<frame>.jpg`` (with ``save_frames``) and ``preds/<name>.json``.
            ``None`` writes nothing.
        name (str, optional): File stem of the outputs; defaults to the video's stem or
            ``camera<index>``.
        pred_score_thr (float): Faces below this score are not drawn (all are in the JSON).
        show (bool): Show the drawn frames in an OpenCV window; needs a display.
        save_vis, save_pred, save_frames (bool): What to write into ``out_dir``.
        max_frames (int, optional): Stop after this many frames.
        print_result (bool): Print each frame's predictions.

    Returns:
        list[dict]: One prediction dict per frame read (``labels``, ``scores``, ``bboxes``,
        ``keypoints``; original pixels) with its ``frame`` index. The JSON file also holds
        ``fps``, ``frames_announced`` (the container's frame count; 0 for a camera) and
        ``frames_read``; a file that announces more frames than could be decoded (a truncated
        file, which OpenCV ends without an error) is reported with a warning, and a source
        without a single decodable frame is an error.
    """
    if show and not has_display():
        raise RuntimeError('show=True needs a display (DISPLAY or WAYLAND_DISPLAY is not set); '
                           'write the results to a folder instead')
    source = _as_source(source)
    cap = open_capture(source)
    if name is None:
        name = (f'camera{source}' if isinstance(source, int) else
                osp.splitext(osp.basename(str(source).rstrip('/')))[0] or 'stream')
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    announced = 0 if isinstance(source, int) else max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
                                                      0)
    total = announced
    if max_frames is not None:
        total = min(total, max_frames) if total > 0 else max_frames
    save_vis, save_pred = bool(out_dir) and save_vis, bool(out_dir) and save_pred
    vis_dir = osp.join(out_dir, 'vis') if out_dir else None
    frames_dir = osp.join(vis_dir, name) if out_dir else None
    # with an unknown length (a camera) the bar counts frames and shows the frame rate
    progress = mmengine.ProgressBar(max(total, 0))
    writer = None
    frames = []
    index = 0
    quit_by_key = False
    window = f'RetinaFace: {name} (q or Esc to quit)'
    # the colours of the inferencer's visualiser (its config may change them)
    landmark_colors = getattr(inferencer.visualizer, 'landmark_colors', None) or LANDMARK_COLORS
    try:
        while max_frames is None or index < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            sample = inferencer(frame, return_datasamples=True)['predictions'][0]
            faces = sample.pred_instances
            drawn = draw_faces(frame, faces.bboxes, faces.scores, faces.get('keypoints', None),
                               score_thr=pred_score_thr, landmark_colors=landmark_colors)
            if save_vis:
                if writer is None:
                    os.makedirs(vis_dir, exist_ok=True)
                    h, w = drawn.shape[:2]
                    writer = cv2.VideoWriter(
                        osp.join(vis_dir, name + '.mp4'), cv2.VideoWriter_fourcc(*'mp4v'), fps,
                        (w, h))
                writer.write(drawn)
                if save_frames:
                    os.makedirs(frames_dir, exist_ok=True)
                    cv2.imwrite(osp.join(frames_dir, f'{index:06d}.jpg'), drawn)
            pred = inferencer.pred2dict(sample)
            pred['frame'] = index
            frames.append(pred)
            if print_result:
                print(pred)
            progress.update()
            index += 1
            if show:
                cv2.imshow(window, drawn)
                if (cv2.waitKey(1) & 0xFF) in QUIT_KEYS:
                    quit_by_key = True
                    break
    finally:
        cap.release()
        if writer is not None:
            writer.release()
        if show:
            cv2.destroyAllWindows()
    if index == 0 and max_frames != 0:
        raise RuntimeError(f'no frame of {source} could be read')
    stopped_early = not quit_by_key and (max_frames is None or index < max_frames)
    if announced == 0 and stopped_early:  # a camera or a stream: no length to compare with
        print_log(f'{source} stopped delivering frames after {index}', logger='current',
                  level=logging.WARNING)
    if 0 < announced and index < total and not quit_by_key:
        print_log(f'{source}: read {index} of the {total} frames the file announces; the '
                  'rest could not be decoded (a truncated or damaged file?)', logger='current',
                  level=logging.WARNING)
    if save_pred:
        mmengine.dump(
            dict(video=str(source), fps=fps, frames_announced=announced, frames_read=index,
                 frames=frames), osp.join(out_dir, 'preds', name + '.json'))
    return frames

