"""capfilt: BLIP CapFilt as an Apache Beam pipeline over WebDataset shards.

The repository keeps its folders at the top (``pipeline/``, ``models/``, ``demo/``) and installs them under one
package name, ``capfilt``, so nothing named ``pipeline`` or ``models`` lands on a user's path.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE_DIRS = {
    "capfilt": "src/capfilt",
    "capfilt.pipeline": "pipeline",
    "capfilt.models": "models",
    "capfilt.demo": "demo",
}
VERSION = re.search(r'__version__ = "([^"]+)"', Path("src/capfilt/__init__.py").read_text()).group(1)
# Trains the embedded demo checkpoints from a source checkout; workers never run it, so the wheel leaves it out.
NOT_SHIPPED = ("capfilt.demo.training",)


def packages() -> list[str]:
    names = []
    for name, folder in PACKAGE_DIRS.items():
        names += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]
    return [n for n in names if not n.startswith(NOT_SHIPPED)]


setup(
    name="capfilt",
    version=VERSION,
    description="Clean web image-text WebDataset shards with BLIP's captioner and ITM filter, on Apache Beam",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    package_dir=PACKAGE_DIRS,
    packages=packages(),
    package_data={
        "capfilt.pipeline": ["pipelines.yaml"],
        "capfilt.models": [
            "embedded/*/*.json",
            "embedded/*/*.safetensors",
            "embedded/*/*.txt",
            "embedded/*/*.jinja",
            "embedded/*/README.md",
            "embedded/README.md",
        ],
    },
    install_requires=[
        "apache-beam>=2.77,<3",
        "torch>=2.4",
        "transformers>=5.0,<6",
        # transformers' device_map: the launcher builds each model on the meta device to refuse, before any work, a
        # checkpoint that would load with weights missing; large VLMs spread over GPUs with it.
        "accelerate>=1.0",
        "tokenizers>=0.21",
        "safetensors>=0.4",
        "pyarrow>=17",
        "numpy>=1.26",
        "pillow>=11",
        "pyyaml>=6",
        "braceexpand>=0.1.7",
        # Video samples: its wheels bundle FFmpeg (h264, vp9, av1, mpeg4 decoders), so no system binary is needed.
        "av>=18,<20",
        # `capfilt eval --retrieval` reads the output tars the way a trainer does.
        "webdataset>=1.0,<2",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "apache-beam[aws]>=2.77,<3",
            "moto[server]>=5",
            "ruff==0.17.6",
            "datasets>=5,<6",
            "duckdb>=1.5",
            "pandas>=2",
        ],
    },
    entry_points={"console_scripts": ["capfilt=capfilt.cli:main"]},
)
