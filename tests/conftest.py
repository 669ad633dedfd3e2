import os
import sys

import torch

# Tests run on CPU with few threads so they behave the same on a 2-core CI machine.
torch.set_num_threads(min(2, os.cpu_count() or 1))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import projects.retinaface  # noqa: E402,F401  (register all modules once)
