from .ohem_negative_miner import OHEMNegativeMiner

__all__ = ['OHEMNegativeMiner']
