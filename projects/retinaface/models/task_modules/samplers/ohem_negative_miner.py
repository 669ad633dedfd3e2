"""Online hard negative mining (OHEM) of RetinaFace / SSD."""
from mmdet.registry import TASK_UTILS
from torch import Tensor


@TASK_UTILS.register_module()
class OHEMNegativeMiner:
    """Keep all positives and only the hardest negatives of one image.

    The number of kept negatives is ``neg_pos_ratio * num_pos`` (3:1 in the paper), capped by
    the number of negatives available. An image without positives (no faces, or none matched)
    keeps ``min_neg`` hardest negatives instead, so that images without faces still train the
    classifier; ``min_neg=0`` reproduces the reference implementation, which drops them.

    Args:
        neg_pos_ratio (float): Negatives kept per positive. Defaults to 3.
        min_neg (int): Negatives kept in an image without positives. Defaults to 16.
    """

    def __init__(self, neg_pos_ratio: float = 3.0, min_neg: int = 16) -> None:
        if neg_pos_ratio < 0:
            raise ValueError(f'neg_pos_ratio must be >= 0, got {neg_pos_ratio}')
        if min_neg < 0:
            raise ValueError(f'min_neg must be >= 0, got {min_neg}')
        self.neg_pos_ratio = neg_pos_ratio
        self.min_neg = int(min_neg)

    def num_negatives(self, num_pos: int, num_neg_available: int) -> int:
        """How many negatives to keep for ``num_pos`` positives."""
        wanted = int(self.neg_pos_ratio * num_pos) if num_pos > 0 else self.min_neg
        return min(wanted, int(num_neg_available))

    def mine(self, losses: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> Tensor:
        """Select the priors that enter the classification loss.

        Args:
            losses (Tensor): Per-prior classification loss, shape (N,) (only ranks negatives;
                it is detached here).
            pos_mask (Tensor): Bool (N,), positive priors.
            neg_mask (Tensor): Bool (N,), negative priors (ignored priors are in neither).

        Returns:
            Tensor: Bool (N,), the positives plus the hardest negatives.
        """
        if losses.dim() != 1 or pos_mask.shape != losses.shape or neg_mask.shape != losses.shape:
            raise ValueError('losses, pos_mask and neg_mask must all have shape (N,), got '
                             f'{tuple(losses.shape)}, {tuple(pos_mask.shape)}, '
                             f'{tuple(neg_mask.shape)}')
        pos_mask = pos_mask.bool()
        neg_mask = neg_mask.bool() & ~pos_mask
        keep = pos_mask.clone()
        num_neg = self.num_negatives(int(pos_mask.sum()), int(neg_mask.sum()))
        if num_neg > 0:
            neg_losses = losses.detach().float().masked_fill(~neg_mask, float('-inf'))
            hard = neg_losses.topk(num_neg).indices
            keep[hard] = True
        return keep

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(neg_pos_ratio={self.neg_pos_ratio}, '
                f'min_neg={self.min_neg})')
