# A custom Beam SDK container for capfilt workers (Dataflow, Flink), as Dataflow recommends for ML:
# workers start with torch, transformers and capfilt installed instead of installing them at boot.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/capfilt/capfilt:latest .
#   docker build --build-arg BAKE_MODELS="Salesforce/blip-image-captioning-large Salesforce/blip-itm-large-coco" ...
#
# The Beam version here must match the one that launches the job (setup.py pins apache-beam 2.77).
FROM apache/beam_python3.11_sdk:2.77.0

# GPU workers: the CUDA build of torch from PyPI; CPU-only workers may pass
# --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu for a smaller image.
ARG TORCH_INDEX=https://pypi.org/simple
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch>=2.4"

WORKDIR /opt/capfilt
COPY setup.py README.md pipelines.yaml ./
COPY src ./src
COPY pipeline ./pipeline
COPY models ./models
COPY demo ./demo
RUN pip install --no-cache-dir .

# Optionally bake hub checkpoints into the image, so workers never download weights.
ARG BAKE_MODELS=""
ENV HF_HOME=/opt/hf
RUN if [ -n "${BAKE_MODELS}" ]; then \
      python -c "import sys; from huggingface_hub import snapshot_download; [snapshot_download(m, allow_patterns=['*.json','*.safetensors','*.txt']) for m in sys.argv[1:]]" ${BAKE_MODELS}; \
    fi
ENV HF_HUB_OFFLINE=${BAKE_MODELS:+1}

# The SDK harness runs bundles, and so the models, in threads of its own; in a thread's own glibc malloc arena
# torch's freed activations go back to the kernel and fault in again per batch (3.8x the page faults on CPU,
# BENCHMARKS.md). One arena for all threads, as local runs set through mallopt (pipeline/allocator.py).
ENV MALLOC_ARENA_MAX=1

ENTRYPOINT ["/opt/apache/beam/boot"]
