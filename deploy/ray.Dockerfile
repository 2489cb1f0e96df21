# The Ray image (head and GPU workers): CUDA runtime, PyPI's CUDA build of torch (it bundles its CUDA
# libraries; the host needs only the driver), bitsandbytes, effft itself
# (the Ray Job's driver runs `python -m worker.job_main`), optionally flash-attention.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
ARG FLASH_ATTN=0
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0 DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends software-properties-common curl \
    && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev build-essential \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /opt/effft
RUN pip install "torch==2.13.0"
COPY deploy/constraints.txt deploy/constraints.txt
COPY pyproject.toml README.md ./
COPY planner planner
COPY worker worker
COPY service service
RUN pip install -c deploy/constraints.txt ".[worker,service]"
# flash-attention compiles against the installed torch; off by default (it takes long to build)
RUN if [ "$FLASH_ATTN" = "1" ]; then pip install --no-build-isolation "flash-attn==2.7.4.post1"; fi
EXPOSE 6379 8265 8080
CMD ["ray", "start", "--head", "--block", "--dashboard-host=0.0.0.0", "--metrics-export-port=8080"]
