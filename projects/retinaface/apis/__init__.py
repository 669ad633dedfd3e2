"""Inference APIs: landmark-aware inferencer, video / camera loop and face / head / aligned crops.

Importing this package (done by ``import projects.retinaface``) installs
:func:`install_det_inferencer_landmarks`, so ``mmdet.apis.DetInferencer`` also exports landmarks.
"""
from .face_crops import (
    ARCFACE_TEMPLATE,
    align_face,
    align_faces,
    arcface_template,
    clip_boxes,
    crop_boxes,
    crop_faces,
    crop_heads,
    estimate_similarity,
    face_boxes,
    head_boxes,
    transform_points,
)
from .face_inferencer import (
    FaceInferencer,
    build_test_pipeline,
    drop_annotation_loaders,
    install_det_inferencer_landmarks,
    landmark_fields,
    uninstall_det_inferencer_landmarks,
)
from .fast_detector import FastFaceDetector
from .video import detect_video, open_capture

install_det_inferencer_landmarks()

__all__ = [
    'FastFaceDetector', 'detect_video', 'open_capture',
    'FaceInferencer', 'build_test_pipeline', 'drop_annotation_loaders', 'landmark_fields',
    'install_det_inferencer_landmarks', 'uninstall_det_inferencer_landmarks',
    'ARCFACE_TEMPLATE', 'arcface_template', 'align_face', 'align_faces', 'clip_boxes',
    'crop_boxes', 'crop_faces', 'crop_heads', 'estimate_similarity', 'face_boxes', 'head_boxes',
    'transform_points'
]
