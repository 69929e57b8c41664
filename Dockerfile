# The AIFactory web server image (the chart's default image: ghcr.io/aifactory/aifactory-server).
# Runs as uid 10001, needs no writable path but /tmp (the chart mounts an emptyDir there and sets
# readOnlyRootFilesystem: true), listens on 8000, and is configured only through env vars (docs/server.md).
# Build it with `make image` (scripts/image/build.py, docs/image.md): with podman it swaps this FROM for a
# Debian bookworm base built from Debian's own mirror (`podman build --from`); with docker it uses this one.
FROM python:3.12.11-slim-bookworm

# The chart's appVersion; scripts/image/build.py passes it, `aifactory-server --version` must agree.
ARG VERSION=dev
LABEL org.opencontainers.image.title="aifactory-server" \
      org.opencontainers.image.description="AIFactory web server with the Redis pub/sub fan-out bridge" \
      org.opencontainers.image.source="https://github.com/aifactory/aifactory" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# tini as PID 1: forwards SIGTERM to the server and reaps orphans (terminal shells' background jobs).
# bubblewrap: the sandbox for terminal shells (docs/security.md#shells; user namespaces in the container:
# docs/image.md).
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini bubblewrap \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY aifactory ./aifactory
COPY validator ./validator
COPY deploy ./deploy
COPY chart ./chart
RUN pip install --no-cache-dir ".[server]" \
    && cd / && rm -rf /src \
    && groupadd --gid 10001 aifactory \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /bin/bash aifactory

WORKDIR /tmp
USER 10001:10001
ENV HOME=/tmp \
    PORT=8000
EXPOSE 8000

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["aifactory-server"]
