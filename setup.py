"""Package definition: installs ``projects.retinaface`` so that any mmdet project can mix
our modules in with ``custom_imports=dict(imports=['projects.retinaface'])``."""
from setuptools import find_packages, setup

setup(
    name='mmdet-retinaface',
    version='0.1.0',
    description='RetinaFace (boxes, 5 landmarks, dense vertices) as an MMDetection 3.x plugin',
    packages=find_packages(include=['projects', 'projects.*']),
    python_requires='>=3.8',
    install_requires=[
        'mmengine==0.10.7', 'mmcv==2.1.0', 'mmdet==3.3.0', 'numpy', 'scipy',
        'pycocotools', 'matplotlib', 'opencv-python', 'setuptools>=77,<81'
    ],
    extras_require={
        'optional': ['onnx', 'onnxruntime', 'tensorboard'],
        'tests': ['pytest', 'ruff'],
    },
    include_package_data=True,
    zip_safe=False,
)
