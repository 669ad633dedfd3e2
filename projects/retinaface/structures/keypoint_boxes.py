"""Horizontal boxes that carry facial landmarks (and optional 3D vertices).

:class:`KeypointBoxes` lets mmdet's stock geometric transforms (``RandomFlip``, ``Resize``,
``RandomCrop``, ``MinIoURandomCrop``, ``Expand``, ``RandomAffine``, ...) move the landmarks of a
face together with its box: those transforms only call box methods (``flip_``, ``rescale_``,
``translate_``, ``clip_``, ``project_``, indexing), which are overridden here to update the extra
per-box fields as well.
"""
from typing import Optional, Sequence, Tuple, TypeVar, Union

import cv2
import numpy as np
import torch
from mmdet.structures.bbox import HorizontalBoxes, register_box, register_box_converter
from torch import Tensor

T = TypeVar('T')
DeviceType = Union[str, torch.device]

#: Horizontal flip order of the five RetinaFace landmarks
#: (left eye, right eye, nose, left mouth corner, right mouth corner).
FACE_FLIP_INDICES = (1, 0, 2, 4, 3)


def _as_tensor(data, dtype, device) -> Tensor:
    return torch.as_tensor(np.asarray(data) if isinstance(data, (list, tuple)) else data,
                           dtype=dtype, device=device)


@register_box(name='kpt_hbox', force=True)
class KeypointBoxes(HorizontalBoxes):
    """``HorizontalBoxes`` (x1, y1, x2, y2) that also carry per-box keypoints.

    Extra fields, aligned with the boxes along every leading dimension:

    - ``keypoints``: float (..., K, 2) in the same pixel frame as the boxes.
    - ``keypoints_valid``: float (..., K) in {0, 1}; 0 means "not annotated". The coordinates of
      invalid keypoints are meaningless; no transform ever turns them valid.
    - ``vertices`` (optional): float (..., V, 3), dense 3D points (x, y in pixels, z depth in
      pixels) or ``None``.
    - ``vertices_valid`` (optional): float (...,) in {0, 1}, one flag per box.

    Geometric behaviour:

    - ``flip_``: mirrors x (horizontal), y (vertical) or both (diagonal). A mirror about one axis
      (horizontal or vertical) turns a face into its mirror image, so the keypoints are
      re-ordered with ``flip_indices`` (default ``(1, 0, 2, 4, 3)`` for K = 5: left/right eyes
      and mouth corners swap) and the vertices with ``vertex_flip_indices`` (default: no
      re-ordering). A diagonal flip mirrors both axes, i.e. rotates by 180 degrees, so nothing
      is re-ordered (as in ``rotate_``). z is unchanged.
    - ``translate_`` / ``rescale_`` / ``project_`` / ``rotate_`` move keypoints and the x, y of
      vertices like the image; z is multiplied by the geometric mean scale of the transform.
    - ``resize_`` changes box extents about their centres only (landmarks stay where they are in
      the image).
    - ``clip_`` clips the **boxes only**. Keypoints that fall outside the image keep their
      coordinates and their validity, as in the reference RetinaFace implementation (the crop
      keeps every face whose centre is inside, and its landmark targets are still correct
      positions even when they lie slightly outside the crop).
    - Indexing, ``cat``, ``stack``, ``clone``, ``to``, ``cpu``, ``cuda``, ``detach``, deepcopy,
      ``empty_boxes`` keep every field aligned. Other reshaping helpers inherited from
      ``BaseBoxes`` (``view``, ``reshape``, ``split``, ...) return boxes whose keypoints are all
      invalid, never stale ones.

    Args:
        data (Tensor | np.ndarray | Sequence): boxes (..., 4) in xyxy.
        keypoints (Tensor | np.ndarray | Sequence, optional): (..., K, 2). ``None`` creates
            ``num_keypoints`` invalid keypoints per box.
        keypoints_valid (optional): (..., K). ``None`` means all given keypoints are valid (or
            all invalid when ``keypoints`` is ``None`` too).
        vertices (optional): (..., V, 3) or ``None``.
        vertices_valid (optional): (...,). ``None`` means every box's vertices are valid.
        num_keypoints (int): K used when ``keypoints`` is ``None``. Defaults to 5.
        flip_indices (Sequence[int], optional): keypoint order after mirroring x. Defaults to
            ``(1, 0, 2, 4, 3)`` when K = 5, else no re-ordering.
        vertex_flip_indices (Sequence[int], optional): vertex order after mirroring x.
        dtype, device, clone, in_mode: as in ``HorizontalBoxes``.
    """

    def __init__(self,
                 data: Union[Tensor, np.ndarray, Sequence],
                 keypoints: Optional[Union[Tensor, np.ndarray, Sequence]] = None,
                 keypoints_valid: Optional[Union[Tensor, np.ndarray, Sequence]] = None,
                 vertices: Optional[Union[Tensor, np.ndarray, Sequence]] = None,
                 vertices_valid: Optional[Union[Tensor, np.ndarray, Sequence]] = None,
                 num_keypoints: int = 5,
                 flip_indices: Optional[Sequence[int]] = None,
                 vertex_flip_indices: Optional[Sequence[int]] = None,
                 dtype: Optional[torch.dtype] = None,
                 device: Optional[DeviceType] = None,
                 clone: bool = True,
                 in_mode: Optional[str] = None) -> None:
        super().__init__(data, dtype=dtype, device=device, clone=clone, in_mode=in_mode)
        boxes = self.tensor
        lead = tuple(boxes.shape[:-1])
        fdtype = boxes.dtype if boxes.is_floating_point() else torch.float32
        dev = boxes.device

        if keypoints is None:
            kpts = boxes.new_zeros(lead + (num_keypoints, 2), dtype=fdtype)
            kvalid = boxes.new_zeros(lead + (num_keypoints, ), dtype=fdtype)
        else:
            kpts = _as_tensor(keypoints, fdtype, dev)
            if kpts.numel() == 0 and kpts.dim() < 3:
                kpts = kpts.reshape(lead + (num_keypoints, 2))
            if tuple(kpts.shape[:-2]) != lead or kpts.dim() != len(lead) + 2 \
                    or kpts.shape[-1] != 2:
                raise ValueError(f'keypoints must have shape {lead + ("K", 2)} to match boxes '
                                 f'{tuple(boxes.shape)}, got {tuple(kpts.shape)}')
            if keypoints_valid is None:
                kvalid = kpts.new_ones(kpts.shape[:-1])
            else:
                kvalid = _as_tensor(keypoints_valid, fdtype, dev)
                if kvalid.numel() == 0:
                    kvalid = kvalid.reshape(kpts.shape[:-1])
                if kvalid.shape != kpts.shape[:-1]:
                    raise ValueError(f'keypoints_valid must have shape '
                                     f'{tuple(kpts.shape[:-1])}, got {tuple(kvalid.shape)}')
            if clone:
                kpts, kvalid = kpts.clone(), kvalid.clone()
        self.keypoints = kpts
        self.keypoints_valid = kvalid

        if vertices is None:
            if vertices_valid is not None:
                raise ValueError('vertices_valid given without vertices')
            self.vertices = None
            self.vertices_valid = None
        else:
            verts = _as_tensor(vertices, fdtype, dev)
            if verts.dim() != len(lead) + 2 or tuple(verts.shape[:-2]) != lead \
                    or verts.shape[-1] != 3:
                raise ValueError(f'vertices must have shape {lead + ("V", 3)} to match boxes '
                                 f'{tuple(boxes.shape)}, got {tuple(verts.shape)}')
            if vertices_valid is None:
                vvalid = verts.new_ones(lead)
            else:
                vvalid = _as_tensor(vertices_valid, fdtype, dev).reshape(lead)
            if clone:
                verts, vvalid = verts.clone(), vvalid.clone()
            self.vertices = verts
            self.vertices_valid = vvalid

        k = self.keypoints.shape[-2]
        if flip_indices is None:
            flip_indices = FACE_FLIP_INDICES if k == 5 else tuple(range(k))
        flip_indices = tuple(int(i) for i in flip_indices)
        if sorted(flip_indices) != list(range(k)):
            raise ValueError(f'flip_indices {flip_indices} is not a permutation of {k} keypoints')
        self.flip_indices = flip_indices
        if vertex_flip_indices is not None:
            vertex_flip_indices = tuple(int(i) for i in vertex_flip_indices)
            if self.vertices is not None and \
                    sorted(vertex_flip_indices) != list(range(self.vertices.shape[-2])):
                raise ValueError('vertex_flip_indices is not a permutation of the vertices')
        self.vertex_flip_indices = vertex_flip_indices

    # ------------------------------------------------------------------ helpers
    @property
    def num_keypoints(self) -> int:
        """Number of keypoints per box (K)."""
        return self.keypoints.shape[-2]

    @property
    def has_vertices(self) -> bool:
        """Whether the boxes carry dense 3D vertices."""
        return self.vertices is not None

    def _new(self: T, boxes: Tensor, keypoints: Tensor, keypoints_valid: Tensor,
             vertices: Optional[Tensor], vertices_valid: Optional[Tensor]) -> T:
        """Build a new instance with the same meta (flip orders) without copying."""
        return type(self)(
            boxes,
            keypoints=keypoints,
            keypoints_valid=keypoints_valid,
            vertices=vertices,
            vertices_valid=vertices_valid,
            num_keypoints=self.num_keypoints,
            flip_indices=self.flip_indices,
            vertex_flip_indices=self.vertex_flip_indices,
            clone=False)

    def _map_fields(self: T, fn) -> T:
        """Apply ``fn`` to every tensor field and wrap the result."""
        verts = None if self.vertices is None else fn(self.vertices)
        vvalid = None if self.vertices_valid is None else fn(self.vertices_valid)
        return self._new(fn(self.tensor), fn(self.keypoints), fn(self.keypoints_valid), verts,
                         vvalid)

    # ------------------------------------------------------- indexing / copying
    def __getitem__(self: T, index) -> T:
        """Index boxes, keypoints and vertices together along the leading dims."""
        boxes = self.tensor
        if isinstance(index, np.ndarray):
            index = torch.as_tensor(index, device=self.device)
        if isinstance(index, Tensor) and index.dtype == torch.bool:
            assert index.dim() < boxes.dim()
        elif isinstance(index, tuple):
            assert len(index) < boxes.dim()
            if Ellipsis in index:
                assert index[-1] is Ellipsis
        new_boxes = boxes[index]
        kpts = self.keypoints[index]
        kvalid = self.keypoints_valid[index]
        verts = None if self.vertices is None else self.vertices[index]
        vvalid = None if self.vertices_valid is None else self.vertices_valid[index]
        if new_boxes.dim() == 1:
            new_boxes = new_boxes.reshape(1, -1)
            kpts = kpts.reshape(1, *kpts.shape[-2:])
            kvalid = kvalid.reshape(1, -1)
            if verts is not None:
                verts = verts.reshape(1, *verts.shape[-2:])
                vvalid = vvalid.reshape(1)
        return self._new(new_boxes, kpts, kvalid, verts, vvalid)

    def __setitem__(self, index, values: 'KeypointBoxes') -> None:
        """Set boxes and every aligned field from another ``KeypointBoxes``."""
        assert type(values) is type(self), \
            'The value to be set must be the same box type as self'
        if isinstance(index, np.ndarray):
            index = torch.as_tensor(index, device=self.device)
        self.tensor[index] = values.tensor
        self.keypoints[index] = values.keypoints
        self.keypoints_valid[index] = values.keypoints_valid
        if self.vertices is not None:
            if values.vertices is None:
                raise ValueError('cannot set boxes with vertices from boxes without vertices')
            self.vertices[index] = values.vertices
            self.vertices_valid[index] = values.vertices_valid

    def __deepcopy__(self, memo):
        other = self._map_fields(lambda t: t.clone())
        memo[id(self)] = other
        return other

    def __repr__(self) -> str:
        extra = '' if self.vertices is None else f', vertices={tuple(self.vertices.shape)}'
        return (f'{self.__class__.__name__}(\n{self.tensor},\n'
                f'keypoints={self.keypoints},\nkeypoints_valid={self.keypoints_valid}{extra})')

    def clone(self: T) -> T:
        """Deep copy of boxes and all aligned fields."""
        return self._map_fields(lambda t: t.clone())

    def to(self: T, *args, **kwargs) -> T:
        """Move/cast every field (keypoint validity keeps a float dtype)."""
        return self._map_fields(lambda t: t.to(*args, **kwargs))

    def cpu(self: T) -> T:
        """Move every field to the CPU."""
        return self._map_fields(lambda t: t.cpu())

    def cuda(self: T, *args, **kwargs) -> T:
        """Move every field to a CUDA device."""
        return self._map_fields(lambda t: t.cuda(*args, **kwargs))

    def detach(self: T) -> T:
        """Detach every field."""
        return self._map_fields(lambda t: t.detach())

    def empty_boxes(self: T, dtype: Optional[torch.dtype] = None,
                    device: Optional[DeviceType] = None) -> T:
        """Zero boxes with the same number of keypoints (and vertices)."""
        k = self.num_keypoints
        dtype = dtype or self.dtype
        device = device or self.device
        verts = vvalid = None
        if self.vertices is not None:
            verts = self.vertices.new_zeros((0, self.vertices.shape[-2], 3), dtype=dtype,
                                            device=device)
            vvalid = self.vertices.new_zeros((0, ), dtype=dtype, device=device)
        return self._new(
            self.tensor.new_zeros((0, 4), dtype=dtype, device=device),
            self.tensor.new_zeros((0, k, 2), dtype=dtype, device=device),
            self.tensor.new_zeros((0, k), dtype=dtype, device=device), verts, vvalid)

    @classmethod
    def cat(cls, box_list: Sequence['KeypointBoxes'], dim: int = 0) -> 'KeypointBoxes':
        """Concatenate boxes with their keypoints (and vertices when all carry them)."""
        return cls._join(box_list, dim, torch.cat)

    @classmethod
    def stack(cls, box_list: Sequence['KeypointBoxes'], dim: int = 0) -> 'KeypointBoxes':
        """Stack boxes with their keypoints along a new leading dimension."""
        return cls._join(box_list, dim, torch.stack)

    @classmethod
    def _join(cls, box_list, dim, fn):
        assert isinstance(box_list, Sequence)
        if len(box_list) == 0:
            raise ValueError('box_list should not be a empty list.')
        assert dim != -1 and dim != box_list[0].dim() - 1
        if not all(isinstance(b, cls) for b in box_list):
            raise TypeError(f'all boxes must be {cls.__name__}, got '
                            f'{[type(b).__name__ for b in box_list]}')
        ks = {b.num_keypoints for b in box_list}
        if len(ks) != 1:
            raise ValueError(f'cannot join boxes with different keypoint counts {ks}')
        with_v = [b.vertices is not None for b in box_list]
        if any(with_v) and not all(with_v):
            raise ValueError('cannot join boxes with and without vertices')
        verts = vvalid = None
        if all(with_v):
            verts = fn([b.vertices for b in box_list], dim=dim)
            vvalid = fn([b.vertices_valid for b in box_list], dim=dim)
        first = box_list[0]
        return cls(
            fn([b.tensor for b in box_list], dim=dim),
            keypoints=fn([b.keypoints for b in box_list], dim=dim),
            keypoints_valid=fn([b.keypoints_valid for b in box_list], dim=dim),
            vertices=verts,
            vertices_valid=vvalid,
            flip_indices=first.flip_indices,
            vertex_flip_indices=first.vertex_flip_indices,
            clone=False)

    # ------------------------------------------------------------ geometry
    def flip_(self, img_shape: Tuple[int, int], direction: str = 'horizontal') -> None:
        """Flip boxes, keypoints and vertices in place (see class docstring)."""
        super().flip_(img_shape, direction)
        h, w = img_shape[0], img_shape[1]
        mirror_x = direction in ('horizontal', 'diagonal')
        mirror_y = direction in ('vertical', 'diagonal')
        kpts = self.keypoints.clone()
        if mirror_x:
            kpts[..., 0] = w - kpts[..., 0]
        if mirror_y:
            kpts[..., 1] = h - kpts[..., 1]
        kvalid = self.keypoints_valid
        # one mirrored axis = a mirror image (left/right swap); both = a 180 degree rotation
        relabel = mirror_x != mirror_y
        if relabel:
            order = list(self.flip_indices)
            kpts = kpts[..., order, :]
            kvalid = kvalid[..., order]
        self.keypoints = kpts.contiguous()
        self.keypoints_valid = kvalid.contiguous()
        if self.vertices is not None:
            verts = self.vertices.clone()
            if mirror_x:
                verts[..., 0] = w - verts[..., 0]
            if mirror_y:
                verts[..., 1] = h - verts[..., 1]
            if relabel and self.vertex_flip_indices is not None:
                verts = verts[..., list(self.vertex_flip_indices), :]
            self.vertices = verts.contiguous()

    def translate_(self, distances: Tuple[float, float]) -> None:
        """Translate boxes, keypoints and vertex x, y in place."""
        super().translate_(distances)
        offset = self.keypoints.new_tensor(distances)
        self.keypoints = self.keypoints + offset
        if self.vertices is not None:
            self.vertices = self.vertices + torch.cat([offset, offset.new_zeros(1)])

    def rescale_(self, scale_factor: Tuple[float, float]) -> None:
        """Scale boxes, keypoints and vertex x, y about the origin (z by sqrt(sx * sy))."""
        super().rescale_(scale_factor)
        sx, sy = float(scale_factor[0]), float(scale_factor[1])
        self.keypoints = self.keypoints * self.keypoints.new_tensor([sx, sy])
        if self.vertices is not None:
            self.vertices = self.vertices * self.vertices.new_tensor(
                [sx, sy, float(np.sqrt(abs(sx * sy)))])

    # ``resize_`` is inherited: it changes box extents about their centres; landmarks, which are
    # image positions, do not move.

    def clip_(self, img_shape: Tuple[int, int]) -> None:
        """Clip the boxes only; keypoints keep coordinates and validity (see class doc)."""
        super().clip_(img_shape)

    def _apply_affine_points(self, matrix: Tensor) -> None:
        """Apply a 3x3 (homography) matrix to keypoints and vertex x, y."""
        def warp(xy: Tensor) -> Tensor:
            if xy.numel() == 0:
                return xy
            ones = xy.new_ones(*xy.shape[:-1], 1)
            pts = torch.cat([xy, ones], dim=-1) @ matrix.T
            return pts[..., :2] / pts[..., 2:3]

        self.keypoints = warp(self.keypoints)
        if self.vertices is not None:
            zscale = float(np.sqrt(abs(np.linalg.det(matrix[:2, :2].cpu().double().numpy()))))
            xy = warp(self.vertices[..., :2])
            self.vertices = torch.cat([xy, self.vertices[..., 2:] * zscale], dim=-1)

    def project_(self, homography_matrix: Union[Tensor, np.ndarray]) -> None:
        """Projectively transform boxes (their corners' hull), keypoints and vertex x, y."""
        super().project_(homography_matrix)
        matrix = self.keypoints.new_tensor(np.asarray(homography_matrix, dtype=np.float64)) \
            if isinstance(homography_matrix, np.ndarray) else \
            homography_matrix.to(self.keypoints)
        self._apply_affine_points(matrix)

    def rotate_(self, center: Tuple[float, float], angle: float) -> None:
        """Rotate boxes (hull of the rotated corners), keypoints and vertex x, y in place.

        ``angle`` in degrees, positive = clockwise, as in ``HorizontalBoxes.rotate_``.
        """
        super().rotate_(center, angle)
        rot = cv2.getRotationMatrix2D(center, -angle, 1)
        matrix = np.concatenate([rot, np.array([[0., 0., 1.]])], axis=0)
        self._apply_affine_points(self.keypoints.new_tensor(matrix))


def _kpt_hbox_to_hbox(boxes: Tensor) -> Tensor:
    return boxes


# Box tensors are identical (xyxy); converting to ``hbox`` drops the landmarks and converting
# from ``hbox`` yields invalid landmarks. ``HorizontalBoxes.overlaps`` needs the first one.
register_box_converter('kpt_hbox', 'hbox', _kpt_hbox_to_hbox, force=True)
register_box_converter('hbox', 'kpt_hbox', _kpt_hbox_to_hbox, force=True)

__all__ = ['KeypointBoxes', 'FACE_FLIP_INDICES']
