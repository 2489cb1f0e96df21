# The API + scheduler image: effft on a slim Debian, CPU torch (the scheduler only tokenizes to
# profile datasets; training runs on the Ray workers).
FROM python:3.11.11-slim-bookworm
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0
WORKDIR /opt/effft
RUN apt-get update && apt-get install -y --no-install-recommends curl=7.88.1-10+deb12u12 \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY deploy/constraints.txt deploy/constraints.txt
COPY pyproject.toml README.md ./
COPY planner planner
COPY worker worker
COPY service service
RUN pip install -c deploy/constraints.txt ".[worker,service]"
EXPOSE 8321
HEALTHCHECK --interval=10s --timeout=5s --retries=12 CMD curl -fsS http://127.0.0.1:8321/healthz || exit 1
CMD ["effft", "server", "--host", "0.0.0.0", "--port", "8321", "--data-dir", "/data"]
