"""Prior-relative encoding of facial landmarks (and dense 3D vertices)."""
import torch
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import get_box_tensor
from torch import Tensor


@TASK_UTILS.register_module()
class LandmarkCoder:
    """Encode points relative to a prior box, as RetinaFace (and SSD) do.

    For a prior with centre ``(cx, cy)`` and size ``(w, h)`` a point ``(x, y)`` becomes::

        dx = (x - cx) / (variance * w),   dy = (y - cy) / (variance * h)

    which is the reference implementation's landmark encoding (its first variance, 0.1), written
    with pixel priors instead of normalised ones (the ratio is the same). Points with a third
    coordinate (the dense-regression vertices) encode ``z`` as ``z / (variance * sqrt(w * h))``:
    depth is relative to the face, so it is only scaled by the prior size.

    Args:
        num_keypoints (int): Points per instance (5 facial landmarks; ``V`` for the mesh).
        variance (float): Scale of the encoding. Defaults to 0.1.
        num_dims (int): Coordinates per point, 2 (landmarks) or 3 (vertices). Defaults to 2.
    """

    def __init__(self, num_keypoints: int = 5, variance: float = 0.1, num_dims: int = 2) -> None:
        if num_keypoints <= 0:
            raise ValueError(f'num_keypoints must be positive, got {num_keypoints}')
        if variance <= 0:
            raise ValueError(f'variance must be positive, got {variance}')
        if num_dims not in (2, 3):
            raise ValueError(f'num_dims must be 2 or 3, got {num_dims}')
        self.num_keypoints = num_keypoints
        self.variance = float(variance)
        self.num_dims = num_dims

    @property
    def encode_size(self) -> int:
        """Length of one encoded instance: ``num_keypoints * num_dims``."""
        return self.num_keypoints * self.num_dims

    def _prior_geometry(self, priors: Tensor):
        priors = get_box_tensor(priors)
        if priors.size(-1) != 4:
            raise ValueError(f'priors must be (..., 4) xyxy boxes, got {tuple(priors.shape)}')
        ctr = (priors[..., :2] + priors[..., 2:]) * 0.5
        wh = priors[..., 2:] - priors[..., :2]
        # (..., 1, D) so it broadcasts over the points of one instance
        scale = wh * self.variance
        if self.num_dims == 3:
            depth = (wh[..., :1] * wh[..., 1:]).clamp(min=0).sqrt() * self.variance
            scale = torch.cat([scale, depth], dim=-1)
            ctr = torch.cat([ctr, ctr.new_zeros(ctr.shape[:-1] + (1, ))], dim=-1)
        return ctr.unsqueeze(-2), scale.unsqueeze(-2)

    def encode(self, keypoints: Tensor, priors: Tensor) -> Tensor:
        """Encode points into prior-relative deltas.

        Args:
            keypoints (Tensor): Points, shape (..., K, D).
            priors (Tensor or BaseBoxes): Priors, shape (..., 4) in xyxy pixels.

        Returns:
            Tensor: Deltas, shape (..., K * D), ordered ``x0, y0, x1, y1, ...``.
        """
        if keypoints.dim() < 2 or keypoints.shape[-2:] != (self.num_keypoints, self.num_dims):
            raise ValueError(f'keypoints must be (..., {self.num_keypoints}, {self.num_dims}), '
                             f'got {tuple(keypoints.shape)}')
        ctr, scale = self._prior_geometry(priors)
        if ctr.shape[:-2] != keypoints.shape[:-2]:
            raise ValueError(f'keypoints {tuple(keypoints.shape)} and priors '
                             f'{tuple(get_box_tensor(priors).shape)} have different leading dims')
        deltas = (keypoints - ctr) / scale
        return deltas.flatten(-2)

    def decode(self, priors: Tensor, deltas: Tensor) -> Tensor:
        """Decode prior-relative deltas into points.

        Args:
            priors (Tensor or BaseBoxes): Priors, shape (..., 4) in xyxy pixels.
            deltas (Tensor): Deltas, shape (..., K * D).

        Returns:
            Tensor: Points, shape (..., K, D).
        """
        if deltas.size(-1) != self.encode_size:
            raise ValueError(f'deltas must be (..., {self.encode_size}), got {tuple(deltas.shape)}')
        ctr, scale = self._prior_geometry(priors)
        deltas = deltas.unflatten(-1, (self.num_keypoints, self.num_dims))
        if ctr.shape[:-2] != deltas.shape[:-2]:
            raise ValueError(f'deltas {tuple(deltas.shape)} and priors '
                             f'{tuple(get_box_tensor(priors).shape)} have different leading dims')
        return deltas * scale + ctr
