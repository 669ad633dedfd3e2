from .finite_loss_hook import FiniteLossHook, NonFiniteLossError

__all__ = ['FiniteLossHook', 'NonFiniteLossError']
