# `make demo` and `make test` create .venv on first use and install everything into it.
PYTHON ?= python3
# The CPU build of torch; on a GPU machine use e.g. `make TORCH=torch demo`.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# open_clip's training loader reads the output in a test. It needs torchvision, and PyPI's torchvision does not
# load beside the CPU torch above, so it lives in an environment of its own with the matching pair (a CUDA build;
# it runs on the CPU). Only the tests use it.
OPENCLIP_VENV := .venv-openclip
OPENCLIP_STAMP := $(OPENCLIP_VENV)/.installed
# webdataset as open_clip's requirements-training.txt pins it (<=0.2.86): its loader breaks on webdataset 1.x.
OPENCLIP_PACKAGES := torch==2.14.1 torchvision==0.29.1 open_clip_torch==3.3.0 webdataset==0.2.86 pandas
# autofaiss indexes the embeddings in a test. It pins numpy<2, which the main environment's stack has left behind
# (and pyarrow 21+ needs numpy 2), so it too lives in an environment of its own.
FAISS_VENV := .venv-faiss
FAISS_STAMP := $(FAISS_VENV)/.installed
FAISS_PACKAGES := autofaiss==2.18.0 "pyarrow<21"

.PHONY: demo test lint clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

$(OPENCLIP_STAMP):
	$(PYTHON) -m venv $(OPENCLIP_VENV)
	$(OPENCLIP_VENV)/bin/pip install --quiet --upgrade pip
	$(OPENCLIP_VENV)/bin/pip install --quiet $(OPENCLIP_PACKAGES)
	touch $(OPENCLIP_STAMP)

$(FAISS_STAMP):
	$(PYTHON) -m venv $(FAISS_VENV)
	$(FAISS_VENV)/bin/pip install --quiet --upgrade pip
	$(FAISS_VENV)/bin/pip install --quiet $(FAISS_PACKAGES)
	touch $(FAISS_STAMP)

demo: $(STAMP)
	$(BIN)/capfilt run demo

test: $(STAMP) $(OPENCLIP_STAMP) $(FAISS_STAMP)
	CAPFILT_OPENCLIP_PYTHON=$(OPENCLIP_VENV)/bin/python CAPFILT_FAISS_PYTHON=$(FAISS_VENV)/bin/python \
		$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(OPENCLIP_VENV) $(FAISS_VENV) capfilt-demo build *.egg-info

# Wheels a lent GPU machine lacks to run `capfilt run` and bench/ (issue 30): it has Python 3.12 with torch,
# transformers, tokenizers, safetensors, accelerate, numpy, pyarrow, pillow, pyyaml, protobuf, grpcio, requests,
# python-dateutil, sortedcontainers, packaging and pyparsing, but no network. apache-beam at .venv's version and
# the needs of it and of capfilt that the machine lacks, each pinned to .venv's version (update with .venv) but
# proto-plus (1.29 asks protobuf>=6.33.5; 1.26 takes 3.19 to 6.x), with --no-deps: the full closure would bring
# numpy, pyarrow and grpcio again. In a Python 3.12 venv holding the machine's packages,
# `pip install --dry-run --no-index --find-links .gpu-wheels apache-beam webdataset braceexpand` wants these 17. av (PyAV, video only) is left out: its
# wheel alone is about 35 MB and the tree that travels has a 64 MiB limit. fallback/ holds protobuf and
# python-dateutil (small), installed there only where the machine's own is outside apache-beam's range (protobuf
# 7 and python-dateutil 4 are out; numpy 2.5, pyarrow 26 and pillow 13 too, but those are too large to carry, and
# the session reports them). bench/gpu_session.sh installs them offline.
GPU_WHEELS := .gpu-wheels
GPU_WHEEL_PACKAGES := apache-beam==2.77.0 beartype==0.22.9 cryptography==50.0.2 cffi==2.1.1 pycparser==3.12 \
	fastavro==1.13.1 fasteners==0.20 httplib2==0.32.1 jsonpickle==4.1.4 objsize==0.7.1 proto-plus==1.26.1 \
	pymongo==4.20.1 dnspython==2.9.2 pytz==2026.6 zstandard==0.25.0 webdataset==1.0.2 braceexpand==0.1.7
GPU_FALLBACK_PACKAGES := protobuf==6.33.6 python-dateutil==2.9.0.post0
GPU_PIP_DOWNLOAD := $(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	--implementation cp --abi cp312 --abi abi3 --abi none --platform manylinux2014_x86_64 \
	--platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_34_x86_64 --platform any

.PHONY: gpu-kit
gpu-kit:
	rm -rf $(GPU_WHEELS)
	$(GPU_PIP_DOWNLOAD) -d $(GPU_WHEELS) $(GPU_WHEEL_PACKAGES)
	$(GPU_PIP_DOWNLOAD) -d $(GPU_WHEELS)/fallback $(GPU_FALLBACK_PACKAGES)
	@du -sh $(GPU_WHEELS)
	@git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null | awk -v w=$$(du -sb $(GPU_WHEELS) | cut -f1) \
		'{ s += $$1 } END { t = (s + w) / 1048576; printf "travels with carry [\"$(GPU_WHEELS)\"]: %.1f MiB (limit 64)\n", t; exit t > 62 }'
