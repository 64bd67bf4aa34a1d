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
