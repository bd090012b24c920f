"""RT3D: real-time 3D CNNs on mobile devices -- structured pruning + TVM code generation."""

from setuptools import find_packages, setup

setup(
    name="rt3d",
    version="0.1.0",
    description=(
        "RT3D on Apache TVM: kernel-group structured (KGS) pruning for 3D CNNs and a TVM pass "
        "plugin that compiles the pruned conv3d layers into sparse kernels"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["rt3d_passes*", "rt3d_prune*", "schedules*"]),
    install_requires=[
        "numpy>=1.24",
        "torch>=2.4,<3",
        "apache-tvm>=0.27,<0.28",
        # 0.1.15.x segfaults in tvm.ir.save_json with apache-tvm 0.27 (MetaSchedule's database)
        "apache-tvm-ffi>=0.1.14,<0.1.15",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        # MetaSchedule's runtime needs
        "psutil>=5.9",
        "tornado>=6.0",
        "cloudpickle>=2.0",
        "xgboost-cpu>=2.0",
    ],
    extras_require={
        # av (PyAV) decodes UCF101/HMDB51 .avi files; the tests write and read real .avi clips
        "test": ["pytest>=8", "ruff>=0.5", "av>=12", "hypothesis>=6.100"],
        "video": ["av>=12"],
        "bench": ["onnx>=1.16", "onnxscript>=0.1", "onnxruntime>=1.18", "openvino>=2024.0",
                  "MNN>=2.9", "executorch>=0.6"],
    },
    entry_points={"console_scripts": ["rt3d=rt3d_passes.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Software Development :: Compilers",
    ],
)
