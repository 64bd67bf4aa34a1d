"""capfilt: BLIP CapFilt as an Apache Beam pipeline over WebDataset shards."""

from setuptools import find_packages, setup

setup(
    name="capfilt",
    version="0.1.0",
    description="Clean web image-text WebDataset shards with BLIP's captioner and ITM filter, on Apache Beam",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["pipeline", "pipeline.*", "models", "models.*"]),
    package_data={
        "pipeline": ["pipelines.yaml"],
        "models": ["demo/*/*.json", "demo/*/*.safetensors", "demo/*/*.txt", "demo/README.md"],
    },
    install_requires=[
        "apache-beam>=2.77,<3",
        "torch>=2.4",
        "transformers>=5.0,<6",
        "tokenizers>=0.21",
        "safetensors>=0.4",
        "pyarrow>=17",
        "pillow>=11",
        "pyyaml>=6",
        "braceexpand>=0.1.7",
    ],
    extras_require={
        "test": ["pytest>=8", "webdataset>=1.0", "apache-beam[aws]>=2.77,<3", "moto[server]>=5"],
    },
    entry_points={"console_scripts": ["capfilt=pipeline.cli:main"]},
)
