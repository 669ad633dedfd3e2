"""RetinaFace plugin for MMDetection 3.x."""
