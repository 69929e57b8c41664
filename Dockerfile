# The AIFactory web server image (the chart's default image: ghcr.io/aifactory/aifactory-server).
# Runs as uid 10001, needs no writable path but /tmp (the chart mounts an emptyDir there and sets
# readOnlyRootFilesystem: true), listens on 8000, and is configured only through env vars (docs/server.md).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# tini as PID 1: forwards SIGTERM to the server and reaps orphans (terminal shells' background jobs).
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY aifactory ./aifactory
COPY validator ./validator
COPY deploy ./deploy
COPY chart ./chart
RUN pip install ".[server]" \
    && cd / && rm -rf /src \
    && groupadd --gid 10001 aifactory \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /bin/bash aifactory

WORKDIR /tmp
USER 10001:10001
ENV HOME=/tmp \
    PORT=8000 \
    AIFACTORY_AUDIT_LOG=/tmp/aifactory-audit.jsonl
EXPOSE 8000

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["aifactory-server"]
