"""Face, head and aligned face crops from detected boxes and five landmarks.

All boxes are ``[x1, y1, x2, y2]`` in pixels of the image they are cut from (``x2 = x1 + w``),
landmarks are ``(5, 2)`` arrays in the order left eye, right eye, nose, left mouth corner, right
mouth corner (the order of ``pred_instances.keypoints``). Images are ``(H, W[, C])`` arrays of
any channel order; crops keep it.
"""
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

# The widely used 112x112 five-point reference of ArcFace / InsightFace (x, y).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
     [70.7299, 92.2041]],
    dtype=np.float64)

ArrayLike = Union[np.ndarray, Sequence]


def _as_boxes(bboxes: ArrayLike) -> np.ndarray:
    if hasattr(bboxes, 'detach'):
        bboxes = bboxes.detach().cpu().numpy()
    boxes = np.asarray(bboxes, dtype=np.float64)
    if boxes.ndim == 1:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f'bboxes must have shape (N, 4) or (4,), got {boxes.shape}')
    return boxes


def _as_points(points: ArrayLike, name: str = 'keypoints') -> np.ndarray:
    if hasattr(points, 'detach'):
        points = points.detach().cpu().numpy()
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f'{name} must have shape (K, 2), got {pts.shape}')
    if not np.isfinite(pts).all():
        raise ValueError(f'{name} must be finite, got {pts.tolist()}')
    return pts


def clip_boxes(bboxes: ArrayLike, img_shape: Tuple[int, int]) -> np.ndarray:
    """Clip ``(N, 4)`` boxes to an image of shape ``(H, W)`` (x to [0, W], y to [0, H])."""
    boxes = _as_boxes(bboxes).copy()
    h, w = int(img_shape[0]), int(img_shape[1])
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
    return boxes


def face_boxes(bboxes: ArrayLike,
               img_shape: Optional[Tuple[int, int]] = None,
               margin: float = 0.0,
               square: bool = False) -> np.ndarray:
    """Face boxes enlarged by a relative margin.

    Args:
        bboxes: ``(N, 4)`` (or ``(4,)``) face boxes.
        img_shape: ``(H, W)`` to clip to; ``None`` leaves the boxes unclipped.
        margin (float): Added on every side as a fraction of the box width (left/right) or
            height (top/bottom); ``0.1`` makes a box 1.2 times as wide and high. Defaults to 0.
        square (bool): Make the box square around its centre (side ``max(w, h)`` before the
            margin) before enlarging. Defaults to False.

    Returns:
        np.ndarray: ``(N, 4)`` float64 boxes.
    """
    if margin < 0:
        raise ValueError(f'margin must be >= 0, got {margin}')
    boxes = _as_boxes(bboxes).copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    if square:
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        cy = (boxes[:, 1] + boxes[:, 3]) / 2
        w = h = np.maximum(w, h)
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    boxes += np.stack([-margin * w, -margin * h, margin * w, margin * h], axis=1)
    return boxes if img_shape is None else clip_boxes(boxes, img_shape)


def head_boxes(bboxes: ArrayLike,
               img_shape: Optional[Tuple[int, int]] = None,
               width_factor: float = 1.5,
               top_factor: float = 0.6,
               bottom_factor: float = 0.2) -> np.ndarray:
    """Head boxes derived from face boxes (for hair / head segmentation and similar uses).

    With face width ``w``, height ``h`` and horizontal centre ``cx`` the head box is
    ``[cx - width_factor * w / 2, y1 - top_factor * h, cx + width_factor * w / 2,
    y2 + bottom_factor * h]``, clipped to the image when ``img_shape`` is given.

    Args:
        bboxes: ``(N, 4)`` (or ``(4,)``) face boxes.
        img_shape: ``(H, W)`` to clip to; ``None`` leaves the boxes unclipped.
        width_factor (float): Head width relative to the face width. Defaults to 1.5.
        top_factor (float): Extension above the face, relative to its height (hair,
            forehead). Defaults to 0.6.
        bottom_factor (float): Extension below the face, relative to its height (chin,
            neck). Defaults to 0.2.

    Returns:
        np.ndarray: ``(N, 4)`` float64 boxes.
    """
    if width_factor <= 0 or top_factor < 0 or bottom_factor < 0:
        raise ValueError('need width_factor > 0, top_factor >= 0 and bottom_factor >= 0, got '
                         f'{width_factor}, {top_factor}, {bottom_factor}')
    boxes = _as_boxes(bboxes)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    out = np.stack([
        cx - width_factor * w / 2, boxes[:, 1] - top_factor * h, cx + width_factor * w / 2,
        boxes[:, 3] + bottom_factor * h
    ], axis=1)
    return out if img_shape is None else clip_boxes(out, img_shape)


def crop_boxes(img: np.ndarray, bboxes: ArrayLike) -> List[np.ndarray]:
    """Cut boxes out of an image.

    Each box is widened to whole pixels (``floor`` of x1/y1, ``ceil`` of x2/y2) and clipped to
    the image; a box outside the image gives an empty ``(0, 0[, C])`` array.

    Returns:
        list[np.ndarray]: One copied crop per box.
    """
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
        raise ValueError('img must be an (H, W) or (H, W, C) numpy array')
    boxes = clip_boxes(bboxes, img.shape[:2])
    crops = []
    for x1, y1, x2, y2 in boxes:
        x1, y1 = int(np.floor(x1)), int(np.floor(y1))
        x2, y2 = max(int(np.ceil(x2)), x1), max(int(np.ceil(y2)), y1)
        crops.append(img[y1:y2, x1:x2].copy())
    return crops


def crop_faces(img: np.ndarray,
               bboxes: ArrayLike,
               margin: float = 0.0,
               square: bool = False) -> List[np.ndarray]:
    """Face crops: :func:`face_boxes` (clipped) cut out with :func:`crop_boxes`."""
    return crop_boxes(img, face_boxes(bboxes, img.shape[:2], margin=margin, square=square))


def crop_heads(img: np.ndarray,
               bboxes: ArrayLike,
               width_factor: float = 1.5,
               top_factor: float = 0.6,
               bottom_factor: float = 0.2) -> List[np.ndarray]:
    """Head crops: :func:`head_boxes` (clipped) cut out with :func:`crop_boxes`."""
    return crop_boxes(
        img,
        head_boxes(
            bboxes,
            img.shape[:2],
            width_factor=width_factor,
            top_factor=top_factor,
            bottom_factor=bottom_factor))


def estimate_similarity(src: ArrayLike, dst: ArrayLike) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation), src -> dst.

    Closed-form solution of Umeyama (1991), without reflections.

    Args:
        src: ``(K, 2)`` source points, ``K >= 2``, not all equal.
        dst: ``(K, 2)`` destination points.

    Returns:
        np.ndarray: ``(2, 3)`` matrix ``M`` with ``dst ~= src @ M[:, :2].T + M[:, 2]``.
    """
    src = _as_points(src, 'src')
    dst = _as_points(dst, 'dst')
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f'src and dst need the same shape (K >= 2, 2), got {src.shape} and '
                         f'{dst.shape}')
    mu_src, mu_dst = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    var_src = (src_c**2).sum() / len(src)
    if var_src <= 1e-12:
        raise ValueError('src points are all equal: no similarity transform is defined')
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    rot = u @ np.diag(d) @ vt
    scale = (s * d).sum() / var_src
    trans = mu_dst - scale * rot @ mu_src
    return np.concatenate([scale * rot, trans[:, None]], axis=1)


def transform_points(points: ArrayLike, matrix: np.ndarray) -> np.ndarray:
    """Apply a ``(2, 3)`` affine matrix to ``(K, 2)`` points."""
    pts = _as_points(points, 'points')
    matrix = np.asarray(matrix, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def arcface_template(image_size: int = 112) -> np.ndarray:
    """The ArcFace five-point template for a square ``image_size`` crop (scaled from 112)."""
    if image_size <= 0:
        raise ValueError(f'image_size must be positive, got {image_size}')
    return ARCFACE_TEMPLATE * (image_size / 112.0)


def align_face(img: np.ndarray,
               keypoints: ArrayLike,
               image_size: int = 112,
               template: Optional[ArrayLike] = None,
               border_value: Union[int, Tuple[int, ...]] = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Aligned face crop by a five-point similarity transform.

    Args:
        img (np.ndarray): The image.
        keypoints: ``(5, 2)`` landmarks of one face in ``img`` pixels.
        image_size (int): Side of the square crop. Defaults to 112.
        template: ``(5, 2)`` reference points in crop pixels; defaults to
            :func:`arcface_template` of ``image_size``.
        border_value: Fill value outside the image. Defaults to 0.

    Returns:
        tuple[np.ndarray, np.ndarray]: the ``(image_size, image_size[, C])`` crop and the
        ``(2, 3)`` matrix mapping image pixels to crop pixels.
    """
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
        raise ValueError('img must be an (H, W) or (H, W, C) numpy array')
    dst = arcface_template(image_size) if template is None else _as_points(template, 'template')
    src = _as_points(keypoints)
    if src.shape != dst.shape:
        raise ValueError(f'keypoints {src.shape} and template {dst.shape} differ in shape')
    matrix = estimate_similarity(src, dst)
    crop = cv2.warpAffine(
        img, matrix, (int(image_size), int(image_size)),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border_value)
    return crop, matrix


def align_faces(img: np.ndarray,
                keypoints: ArrayLike,
                image_size: int = 112,
                template: Optional[ArrayLike] = None) -> List[np.ndarray]:
    """:func:`align_face` for ``(N, 5, 2)`` landmarks; returns the N crops."""
    if hasattr(keypoints, 'detach'):
        keypoints = keypoints.detach().cpu().numpy()
    kpts = np.asarray(keypoints, dtype=np.float64)
    if kpts.ndim != 3:
        raise ValueError(f'keypoints must have shape (N, K, 2), got {kpts.shape}')
    return [align_face(img, k, image_size=image_size, template=template)[0] for k in kpts]
