# syntax=docker/dockerfile:1
# Two images from one source tree (the README's installs, as extras):
#   docker build --target api    -t boxal-api .     # pip install .           (no torch)
#   docker build --target worker -t boxal-worker .  # pip install '.[worker,weights]' (CUDA torch, weights)
# Configuration comes from BOXAL_* environment variables at run time; nothing secret is baked in.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS source
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BOXAL_DATA_DIR=/data
RUN useradd --create-home --uid 10001 boxal \
    && mkdir -p /data /images \
    && chown boxal:boxal /data
WORKDIR /opt/boxal
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY oracle ./oracle
COPY formats ./formats
COPY migrations ./migrations

FROM source AS api
RUN pip install .
USER boxal
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=5 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"
CMD ["boxal", "serve", "--no-worker", "--no-migrate", "--host", "0.0.0.0", "--port", "8000"]

FROM source AS worker
# PyPI's Linux torch wheels are the CUDA build: with the NVIDIA container toolkit the worker uses the GPU
RUN pip install '.[worker,weights]'
USER boxal
HEALTHCHECK --interval=30s --timeout=20s --start-period=60s --retries=3 \
    CMD celery -A worker.celery_app inspect ping --destination "boxal@$HOSTNAME" --timeout 10 || exit 1
CMD ["boxal", "worker"]
