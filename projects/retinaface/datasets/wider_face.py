"""WIDER FACE with five facial landmarks (and optional dense 3D vertices).

Annotation formats (chosen from the file's extension and first line):

(a) RetinaFace ``label.txt``::

        # 0--Parade/0_Parade_marchingband_1_849.jpg
        449 330 122 149 488.906 373.643 0.0 542.089 376.442 0.0 ... 0.82

    one ``# relative/path.jpg`` line per image, then one line per face: ``x y w h`` followed by
    five ``(lx ly flag)`` triples and a blur score (20 numbers; 19 without blur), or just
    ``x y w h`` (val/test files). A landmark whose ``lx`` and ``ly`` are both ``-1`` is not
    annotated (a face without landmarks has ``-1`` for all of them). The flag (0 visible,
    1 occluded) is not used.
(b) official ``wider_face_{train,val}_bbx_gt.txt``: image line, face-count line, then
    ``max(count, 1)`` lines ``x y w h blur expression illumination invalid occlusion pose``
    (an image with 0 faces still has one line of zeros, read as one zero-size row).
(c) official ``.mat`` ground truth (``event_list``, ``file_list``, ``face_bbx_list``,
    ``invalid_label_list``, ...), e.g. ``wider_face_split/wider_face_train.mat`` or
    ``eval_ground_truth/wider_face_val.mat``. A ``.mat`` without ``face_bbx_list`` (the test
    split) gives images without faces.

Optional dense vertices come from a companion ``.npz`` (``vertices_file``): one array per image,
keyed by the image id ``'event/name'`` (no extension), of shape ``(num_rows, V, 3)`` float,
aligned row for row with that image's face rows in the annotation file (including rows that
are later dropped). A face whose vertices contain any NaN has ``vertices_valid = 0``; images
missing from the file have all faces invalid. ``V`` must be the same for all images.

Bad input:

- malformed annotation lines raise ``ValueError`` naming the file and line number;
- rows with ``w <= 0`` or ``h <= 0`` are dropped (counted as ``dropped_zero_size``);
- when the image size is known (``read_image_size=True``) and ``clip_to_image=True``, boxes are
  clipped to the image (counted as ``clipped``) and boxes with no area inside the image are
  dropped (``dropped_outside``);
- ``invalid`` faces (official files) are kept with ``ignore_flag=1``;
- missing image files, or files whose header cannot be read: see ``missing_images``;
- files that pass that check but cannot be decoded when loaded (a truncated download: OpenCV
  returns no image for a JPEG cut short): see ``undecodable_images``;
- grayscale / 4-channel images are loaded as 3-channel BGR by ``LoadImageFromFile``
  (``color_type='color'``);
- images without faces stay in the dataset (testing) and are removed for training by
  ``filter_cfg=dict(filter_empty_gt=True)``.

Every count is logged with ``print_log`` and exposed in :attr:`WIDERFaceDataset.face_counts` and
:attr:`WIDERFaceDataset.image_counts`, with
``face_counts['raw'] == kept + ignored + dropped_zero_size + dropped_outside``.
"""
import logging
import os.path as osp
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmdet.datasets import BaseDetDataset
from mmdet.registry import DATASETS
from mmengine.dataset import Compose
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from projects.retinaface.utils import image_load_failure

NUM_KEYPOINTS = 5


def _error(path: str, line_no: Optional[int], msg: str) -> ValueError:
    where = f'{path}:{line_no}' if line_no is not None else path
    return ValueError(f'{where}: {msg}')


def _parse_numbers(path: str, line_no: int, line: str) -> List[float]:
    try:
        values = [float(v) for v in line.split()]
    except ValueError:
        raise _error(path, line_no, f'expected numbers, got {line!r}') from None
    if not all(np.isfinite(values)):
        raise _error(path, line_no, f'non-finite number in {line!r}')
    return values


def _row(xywh, line_no=None, keypoints=None, invalid=0, blur=None) -> dict:
    """A raw face row: box in xywh, optional (5, 2) landmarks with -1 for missing points."""
    return dict(xywh=[float(v) for v in xywh], line=line_no, keypoints=keypoints,
                invalid=int(invalid), blur=blur)


def parse_retinaface_label(path: str) -> List[dict]:
    """Parse a RetinaFace ``label.txt`` into ``[dict(path, rows, line)]`` in file order."""
    images: List[dict] = []
    with open(path, encoding='utf-8') as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith('#'):
                name = line[1:].strip()
                if not name:
                    raise _error(path, line_no, 'image line "#" without a path')
                images.append(dict(path=name, rows=[], line=line_no))
                continue
            if not images:
                raise _error(path, line_no, 'face line before the first "# image" line')
            values = _parse_numbers(path, line_no, line)
            if len(values) == 4:
                images[-1]['rows'].append(_row(values, line_no))
            elif len(values) in (19, 20):
                kpts = np.asarray(values[4:19], dtype=np.float64).reshape(NUM_KEYPOINTS, 3)
                blur = values[19] if len(values) == 20 else None
                images[-1]['rows'].append(
                    _row(values[:4], line_no, keypoints=kpts[:, :2], blur=blur))
            else:
                raise _error(path, line_no,
                             f'expected 4, 19 or 20 numbers per face, got {len(values)}')
    return images


def parse_official_bbx_gt(path: str) -> List[dict]:
    """Parse the official ``wider_face_*_bbx_gt.txt`` into ``[dict(path, rows, line)]``."""
    with open(path, encoding='utf-8') as f:
        lines = [(i, ln.strip()) for i, ln in enumerate(f, 1) if ln.strip()]
    images: List[dict] = []
    pos = 0
    while pos < len(lines):
        line_no, name = lines[pos]
        if not name.lower().endswith(('.jpg', '.jpeg', '.png', '.bmp')):
            raise _error(path, line_no, 'expected an image path line of the official bbx_gt '
                         f'format (RetinaFace label files start with "# path"), got {name!r}')
        if pos + 1 >= len(lines):
            raise _error(path, line_no, f'file ends after image {name!r}: no face count')
        count_no, count_str = lines[pos + 1]
        try:
            count = int(count_str)
        except ValueError:
            raise _error(path, count_no, f'expected the face count of {name!r}, '
                         f'got {count_str!r}') from None
        if count < 0:
            raise _error(path, count_no, f'negative face count {count}')
        num_lines = max(count, 1)
        if pos + 2 + num_lines > len(lines):
            raise _error(path, count_no, f'file ends inside image {name!r}: expected '
                         f'{num_lines} face lines')
        rows = []
        for face_no, face_line in lines[pos + 2:pos + 2 + num_lines]:
            values = _parse_numbers(path, face_no, face_line)
            if len(values) != 10:
                raise _error(path, face_no, 'expected 10 numbers (x y w h blur expression '
                             f'illumination invalid occlusion pose), got {len(values)}')
            rows.append(_row(values[:4], face_no, invalid=values[7], blur=values[4]))
        images.append(dict(path=name, rows=rows, line=line_no))
        pos += 2 + num_lines
    return images


def _mat_str(item) -> str:
    arr = np.asarray(item)
    while arr.dtype == object and arr.size == 1:
        arr = np.asarray(arr.flat[0])
    if arr.size != 1:
        raise ValueError(f'expected one string, got {arr!r}')
    return str(arr.flat[0])


def parse_wider_mat(path: str) -> List[dict]:
    """Parse an official WIDER FACE ``.mat`` ground truth into ``[dict(path, rows, line)]``."""
    import scipy.io as sio
    try:
        mat = sio.loadmat(path)
    except Exception as e:  # scipy raises several types for broken files
        raise ValueError(f'{path}: cannot read .mat file ({e})') from e
    for key in ('event_list', 'file_list'):
        if key not in mat:
            raise ValueError(f'{path}: missing {key!r} (keys: '
                             f'{sorted(k for k in mat if not k.startswith("__"))})')
    events = mat['event_list'].reshape(-1)
    files = mat['file_list'].reshape(-1)
    boxes = mat['face_bbx_list'].reshape(-1) if 'face_bbx_list' in mat else None
    invalid = mat['invalid_label_list'].reshape(-1) if 'invalid_label_list' in mat else None
    blur = mat['blur_label_list'].reshape(-1) if 'blur_label_list' in mat else None
    if len(files) != len(events) or (boxes is not None and len(boxes) != len(events)):
        raise ValueError(f'{path}: event_list, file_list and face_bbx_list lengths differ')
    images = []
    for e, event_item in enumerate(events):
        event = _mat_str(event_item)
        names = np.asarray(files[e]).reshape(-1)
        if names.dtype == object and names.size == 1 and \
                np.asarray(names[0]).dtype == object:
            names = np.asarray(names[0]).reshape(-1)
        ev_boxes = ev_invalid = ev_blur = None
        if boxes is not None:
            ev_boxes = _mat_cells(boxes[e], len(names), path, event, 'face_bbx_list')
        if invalid is not None:
            ev_invalid = _mat_cells(invalid[e], len(names), path, event, 'invalid_label_list')
        if blur is not None:
            ev_blur = _mat_cells(blur[e], len(names), path, event, 'blur_label_list')
        for i, name_item in enumerate(names):
            name = _mat_str(name_item)
            rows = []
            if ev_boxes is not None:
                bb = np.asarray(ev_boxes[i], dtype=np.float64)
                if bb.size == 0:
                    bb = bb.reshape(0, 4)
                if bb.ndim != 2 or bb.shape[1] != 4:
                    raise ValueError(f'{path}: {event}/{name}: face_bbx_list entry has shape '
                                     f'{bb.shape}, expected (N, 4)')
                inv = np.zeros(len(bb))
                if ev_invalid is not None:
                    inv = np.asarray(ev_invalid[i]).reshape(-1)
                    if len(inv) != len(bb):
                        raise ValueError(f'{path}: {event}/{name}: {len(inv)} invalid labels '
                                         f'for {len(bb)} boxes')
                bl = None if ev_blur is None else np.asarray(ev_blur[i]).reshape(-1)
                for j, xywh in enumerate(bb):
                    rows.append(_row(xywh, None, invalid=inv[j],
                                     blur=None if bl is None or len(bl) <= j else float(bl[j])))
            images.append(dict(path=f'{event}/{name}.jpg', rows=rows, line=None))
    return images


def _mat_cells(cell, num: int, path: str, event: str, key: str) -> list:
    arr = np.asarray(cell)
    if arr.dtype == object and arr.size == 1 and np.asarray(arr.flat[0]).dtype == object:
        arr = np.asarray(arr.flat[0])
    arr = arr.reshape(-1)
    if len(arr) != num:
        raise ValueError(f'{path}: event {event}: {key} has {len(arr)} entries for {num} files')
    return list(arr)


def detect_format(path: str) -> str:
    """Return ``'mat'``, ``'retinaface'`` or ``'official_txt'`` for an annotation file."""
    if path.lower().endswith('.mat'):
        return 'mat'
    with open(path, encoding='utf-8') as f:
        for line in f:
            if line.strip():
                return 'retinaface' if line.lstrip().startswith('#') else 'official_txt'
    raise ValueError(f'{path}: empty annotation file')


def read_image_size(path: str) -> Tuple[int, int]:
    """(height, width) of the image as ``LoadImageFromFile`` will decode it, from the header:
    OpenCV applies the EXIF orientation, so orientations 5-8 (90/270 degree rotations) swap the
    header's width and height. Raises ``OSError``/``ValueError`` if unreadable."""
    try:
        from PIL import Image
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF Orientation
                w, h = h, w
    except ImportError:  # pragma: no cover - Pillow is a dependency of mmengine's tools
        import cv2
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f'cannot decode {path}') from None
        h, w = img.shape[:2]
    return int(h), int(w)


# ``force=True``: replaces mmdet's VOC-XML ``WIDERFaceDataset`` in the ``mmdet`` scope.
@DATASETS.register_module(force=True)
class WIDERFaceDataset(BaseDetDataset):
    """WIDER FACE (one class, ``'face'``) with landmarks and optional dense vertices.

    Registered with ``force=True`` under the name of mmdet's VOC-XML ``WIDERFaceDataset``,
    which it replaces once ``projects.retinaface`` is imported.

    Each ``data_info`` has ``img_path``, ``img_id`` (``'event/name'``), ``height``, ``width``
    (from the image header; ``None`` when the image is absent and ``missing_images='keep'``;
    ``LoadImageFromFile`` fills ``ori_shape`` anyway) and ``instances`` with ``bbox``
    ``[x1, y1, x2, y2]`` (x2 = x + w), ``bbox_label`` 0, ``ignore_flag``, ``keypoints``
    ``[[x, y]] * 5``, ``keypoints_valid`` ``[0|1] * 5`` and, with ``vertices_file``,
    ``vertices`` ``[[x, y, z]] * V`` and ``vertices_valid``.

    Args:
        ann_file (str): RetinaFace ``label.txt``, official ``*_bbx_gt.txt`` or ``.mat``.
        data_prefix (dict): ``dict(img='WIDER_train/images/')``; image path =
            ``img prefix + 'event/name.jpg'``.
        vertices_file (str, optional): companion ``.npz`` of dense vertices (see module doc).
            Relative paths are joined with ``data_root``.
        missing_images (str): what to do with image files that do not exist or whose header
            cannot be read at dataset build time: ``'error'`` (default; ``FileNotFoundError`` /
            ``ValueError`` naming the file), ``'skip'`` (drop the image and its faces, counted
            and logged) or ``'keep'`` (no check; ``height``/``width`` ``None``; a missing or
            bad file is then met when loaded, and ``undecodable_images`` applies).
        undecodable_images (str): what to do when an image cannot be loaded by the pipeline although
            it passed the build-time check (or was not checked): ``'error'`` (``OSError`` naming the
            file), ``'skip'`` (training only: mmengine's ``BaseDataset`` draws another image),
            ``'empty'`` (the rest of the pipeline runs on a black image of the recorded size, 32 x
            32 if unknown, with ``img_unreadable=True``, which ``PackFaceInputs`` keeps in the meta
            information: ``RetinaFaceHead`` predicts no faces for it and ``WIDERFaceMetric``
            evaluates it with no detections, so its faces count as missed) or ``'auto'`` (default:
            ``'empty'`` in ``test_mode``, else ``'skip'``). Every case is logged as a warning naming
            the file (once per file) and counted in ``image_counts['undecodable']`` (distinct files,
            per process: each dataloader worker counts its own).
        read_image_size (bool): read ``height``/``width`` from image headers. Defaults to True.
        clip_to_image (bool): clip boxes to the image when its size is known. Defaults to True.
        held_out (dict, optional): deterministic image split on the annotation-file order,
            ``dict(every=10, offset=0, part='rest' | 'held_out')``: image ``i`` (0-based, in
            file order, before any skipping or filtering) is held out when
            ``i % every == offset``. ``part='rest'`` keeps the other images (training),
            ``'held_out'`` only those. ``None`` keeps all.
        filter_cfg (dict, optional): ``filter_empty_gt`` (drop images without any non-ignored
            face; only when not ``test_mode``) and ``min_size`` (drop images whose shorter side
            is smaller, when the size is known).
        **kwargs: passed to ``BaseDetDataset``.
    """

    METAINFO = dict(classes=('face', ), palette=[(0, 255, 0)])

    def __init__(self,
                 *args,
                 vertices_file: Optional[str] = None,
                 missing_images: str = 'error',
                 undecodable_images: str = 'auto',
                 read_image_size: bool = True,
                 clip_to_image: bool = True,
                 held_out: Optional[dict] = None,
                 **kwargs) -> None:
        if missing_images not in ('error', 'skip', 'keep'):
            raise ValueError(f"missing_images must be 'error', 'skip' or 'keep', "
                             f'got {missing_images!r}')
        if undecodable_images not in ('error', 'skip', 'empty', 'auto'):
            raise ValueError("undecodable_images must be 'error', 'skip', 'empty' or 'auto', "
                             f'got {undecodable_images!r}')
        if undecodable_images == 'skip' and kwargs.get('test_mode', False):
            raise ValueError("undecodable_images='skip' needs test_mode=False (mmengine "
                             "refuses skipped samples in test mode); use 'empty'")
        if held_out is not None:
            held_out = dict(held_out)
            unknown = set(held_out) - {'every', 'offset', 'part'}
            if unknown:
                raise ValueError(f'unknown held_out keys {sorted(unknown)}')
            every = int(held_out.get('every', 10))
            offset = int(held_out.get('offset', 0))
            part = held_out.get('part', 'rest')
            if every < 2 or not 0 <= offset < every or part not in ('rest', 'held_out'):
                raise ValueError(f'bad held_out {held_out}: need every >= 2, '
                                 "0 <= offset < every, part in ('rest', 'held_out')")
            held_out = dict(every=every, offset=offset, part=part)
        self.vertices_file = vertices_file
        self.missing_images = missing_images
        self.undecodable_images = undecodable_images
        self.undecodable_files = set()
        self.read_image_size = read_image_size
        self.clip_to_image = clip_to_image
        self.held_out = held_out
        self.face_counts: Dict[str, int] = {}
        self.image_counts: Dict[str, int] = {}
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ loading
    def load_data_list(self) -> List[dict]:
        """Parse the annotation file and turn every image into a ``data_info``."""
        self.face_counts = dict(raw=0, kept=0, ignored=0, dropped_zero_size=0,
                                dropped_outside=0, clipped=0, with_keypoints=0,
                                with_vertices=0)
        self.image_counts = dict(in_file=0, selected=0, missing_skipped=0, filtered=0,
                                 undecodable=0)
        with get_local_path(self.ann_file, backend_args=self.backend_args) as local:
            if not osp.isfile(local):
                raise FileNotFoundError(
                    f'annotation file not found: {osp.normpath(self.ann_file)} (WIDER FACE is '
                    'not redistributed: download it as the README\'s "WIDER FACE data" section '
                    'says, or point WIDER_DATA_ROOT / data_root at your copy)')
            fmt = detect_format(local)
            parser = dict(mat=parse_wider_mat, retinaface=parse_retinaface_label,
                          official_txt=parse_official_bbx_gt)[fmt]
            images = parser(local)
        self.ann_format = fmt
        seen = set()
        for img in images:
            if img['path'] in seen:
                raise _error(self.ann_file, img['line'], f'duplicate image {img["path"]!r}')
            seen.add(img['path'])
        self.image_counts['in_file'] = len(images)
        if self.held_out is not None:
            every, offset = self.held_out['every'], self.held_out['offset']
            want_held = self.held_out['part'] == 'held_out'
            images = [im for i, im in enumerate(images) if (i % every == offset) == want_held]
        self.image_counts['selected'] = len(images)
        self._vertices = self._load_vertices()

        data_list = []
        missing = []
        for img in images:
            info = self.parse_data_info(img)
            if info is None:
                missing.append(img['path'])
                continue
            data_list.append(info)
        self.image_counts['missing_skipped'] = len(missing)
        self._vertices = None
        fc = self.face_counts
        assert fc['raw'] == fc['kept'] + fc['ignored'] + fc['dropped_zero_size'] + \
            fc['dropped_outside']
        print_log(
            f'WIDERFaceDataset {self.ann_file} ({fmt}): {len(data_list)} images '
            f'({self.image_counts["in_file"]} in file, {self.image_counts["selected"]} selected'
            f', {len(missing)} missing skipped); faces: {fc["raw"]} rows = {fc["kept"]} kept + '
            f'{fc["ignored"]} ignored + {fc["dropped_zero_size"]} dropped (zero size) + '
            f'{fc["dropped_outside"]} dropped (outside image); {fc["clipped"]} clipped; '
            f'{fc["with_keypoints"]} with landmarks', logger='current')
        if missing:
            print_log(f'WIDERFaceDataset: skipped {len(missing)} missing/unreadable images, '
                      f'e.g. {missing[:3]}', logger='current', level=logging.WARNING)
        return data_list

    def _load_vertices(self) -> Optional[dict]:
        if self.vertices_file is None:
            return None
        path = self.vertices_file
        if not osp.isabs(path) and self.data_root:
            path = osp.join(self.data_root, path)
        if not osp.isfile(path):
            raise FileNotFoundError(f'vertices file not found: {path}')
        with np.load(path, allow_pickle=False) as npz:
            verts = {k: np.asarray(npz[k], dtype=np.float32) for k in npz.files}
        num_v = None
        for key, arr in verts.items():
            if arr.ndim != 3 or arr.shape[2] != 3:
                raise ValueError(f'{path}: vertices of {key!r} have shape {arr.shape}, '
                                 'expected (num_faces, V, 3)')
            if num_v is None:
                num_v = arr.shape[1]
            elif arr.shape[1] != num_v:
                raise ValueError(f'{path}: {key!r} has {arr.shape[1]} vertices per face, '
                                 f'others {num_v}')
        self._num_vertices = num_v or 0
        self._vertices_path = path
        return verts

    def parse_data_info(self, raw_data_info: dict) -> Optional[dict]:
        """Turn one parsed image record into a ``data_info`` (``None`` = skipped image)."""
        rel = raw_data_info['path']
        img_path = osp.join(self.data_prefix.get('img', ''), rel)
        img_id = osp.splitext(rel)[0]
        height = width = None
        if self.missing_images != 'keep':
            if not osp.isfile(img_path):
                if self.missing_images == 'skip':
                    return None
                raise FileNotFoundError(f'image not found: {img_path} (listed in '
                                        f'{self.ann_file}); set missing_images="skip" to drop '
                                        'missing images')
            if self.read_image_size:
                try:
                    height, width = read_image_size(img_path)
                except Exception as e:
                    if self.missing_images == 'skip':
                        return None
                    raise ValueError(f'cannot read image {img_path}: {e}') from e
        elif self.read_image_size and osp.isfile(img_path):
            try:
                height, width = read_image_size(img_path)
            except Exception:
                height = width = None

        rows = raw_data_info['rows']
        verts = None
        if self._vertices is not None:
            verts = self._vertices.get(img_id)
            if verts is not None and len(verts) != len(rows):
                raise ValueError(f'{self._vertices_path}: {img_id!r} has vertices for '
                                 f'{len(verts)} faces but the annotation has {len(rows)} rows')

        fc = self.face_counts
        instances = []
        for r, row in enumerate(rows):
            fc['raw'] += 1
            x, y, w, h = row['xywh']
            if w <= 0 or h <= 0:
                fc['dropped_zero_size'] += 1
                continue
            x1, y1, x2, y2 = x, y, x + w, y + h
            if self.clip_to_image and height is not None:
                cx1, cy1 = min(max(x1, 0.), width), min(max(y1, 0.), height)
                cx2, cy2 = min(max(x2, 0.), width), min(max(y2, 0.), height)
                if cx2 <= cx1 or cy2 <= cy1:
                    fc['dropped_outside'] += 1
                    continue
                if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
                    fc['clipped'] += 1
                x1, y1, x2, y2 = cx1, cy1, cx2, cy2
            kpts = row['keypoints']
            if kpts is None:
                keypoints = [[0., 0.]] * NUM_KEYPOINTS
                kvalid = [0] * NUM_KEYPOINTS
            else:
                missing_pt = (kpts[:, 0] == -1) & (kpts[:, 1] == -1)
                kvalid = [int(not m) for m in missing_pt]
                keypoints = [[float(px), float(py)] if v else [0., 0.]
                             for (px, py), v in zip(kpts, kvalid)]
            ignore = int(row['invalid'] != 0)
            instance = dict(bbox=[float(x1), float(y1), float(x2), float(y2)], bbox_label=0,
                            ignore_flag=ignore, keypoints=keypoints, keypoints_valid=kvalid)
            if row['blur'] is not None:
                instance['blur'] = float(row['blur'])
            if self._vertices is not None:
                if verts is None:
                    v = np.zeros((self._num_vertices, 3), dtype=np.float32)
                    v_ok = 0
                else:
                    v = verts[r]
                    v_ok = int(np.isfinite(v).all())
                    if not v_ok:
                        v = np.nan_to_num(v, nan=0., posinf=0., neginf=0.)
                instance['vertices'] = v.tolist()
                instance['vertices_valid'] = v_ok
                fc['with_vertices'] += v_ok
            fc['ignored' if ignore else 'kept'] += 1
            fc['with_keypoints'] += int(any(kvalid))
            instances.append(instance)
        return dict(img_path=img_path, img_id=img_id, height=height, width=width,
                    instances=instances)

    # ------------------------------------------------------------------ pipeline
    def prepare_data(self, idx) -> Any:
        """The pipeline's output for image ``idx``. When it fails because the image cannot
        be decoded, ``undecodable_images`` decides (see the class doc); other errors pass."""
        try:
            return self.pipeline(self.get_data_info(idx))
        except Exception:
            data_info = self.get_data_info(idx)
            reason = image_load_failure(data_info['img_path'], self.backend_args)
            if reason is None:
                raise
        policy = self.undecodable_images
        if policy == 'auto':
            policy = 'empty' if self.test_mode else 'skip'
        path = data_info['img_path']
        if path not in self.undecodable_files:  # warned once per file and process
            self.undecodable_files.add(path)
            self.image_counts['undecodable'] = len(self.undecodable_files)
            what = dict(error='stopping', skip='skipped (another image is drawn instead)',
                        empty='evaluated with no detections')[policy]
            print_log(f'WIDERFaceDataset: cannot load image {path} ({reason}); {what}. '
                      f'Undecodable images so far in this process: '
                      f'{len(self.undecodable_files)}', logger='current', level=logging.WARNING)
        if policy == 'error':
            raise OSError(f'cannot load image {path} ({reason}); replace the '
                          "file or set undecodable_images='skip' (training) / 'empty' "
                          '(testing) in the dataset config')
        if policy == 'skip':
            return None
        transforms = self.pipeline.transforms
        loader = next((i for i, t in enumerate(transforms) if isinstance(t, LoadImageFromFile)),
                      None)
        if loader is None:
            raise OSError(f'cannot load image {path} ({reason}), and the '
                          'pipeline has no LoadImageFromFile to stand a placeholder in for')
        h, w = data_info.get('height') or 32, data_info.get('width') or 32
        float_img = getattr(transforms[loader], 'to_float32', False)
        img = np.zeros((int(h), int(w), 3), dtype=np.float32 if float_img else np.uint8)
        results = dict(data_info, img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2],
                       img_unreadable=True)
        return Compose(transforms[loader + 1:])(results)

    def _serialize_data(self):
        """mmengine cannot serialize an empty list; an empty dataset stays empty (warned)."""
        if not self.data_list:
            print_log(f'WIDERFaceDataset {self.ann_file}: no images left', logger='current',
                      level=logging.WARNING)
            return np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64)
        return super()._serialize_data()

    def filter_data(self) -> List[dict]:
        """Drop images without non-ignored faces / smaller than ``min_size`` (training)."""
        if self.test_mode or not self.filter_cfg:
            return self.data_list
        filter_empty_gt = self.filter_cfg.get('filter_empty_gt', False)
        min_size = self.filter_cfg.get('min_size', 0)
        kept = []
        for info in self.data_list:
            if filter_empty_gt and not any(not i['ignore_flag'] for i in info['instances']):
                continue
            if min_size and info['width'] is not None and \
                    min(info['width'], info['height']) < min_size:
                continue
            kept.append(info)
        self.image_counts['filtered'] = len(self.data_list) - len(kept)
        if self.image_counts['filtered']:
            print_log(f'WIDERFaceDataset: filtered out {self.image_counts["filtered"]} images '
                      f'({filter_empty_gt=}, {min_size=})', logger='current')
        return kept


__all__ = ['WIDERFaceDataset', 'parse_retinaface_label', 'parse_official_bbx_gt',
           'parse_wider_mat', 'detect_format', 'read_image_size']
