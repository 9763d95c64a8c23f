# syntax=docker/dockerfile:1
# The ops console's image. Build context: the repository root, e.g.
#   docker build -f infra/docker/console.Dockerfile -t stayops/console .
# Runs `python -m stayops_console`; configuration comes from STAYOPS_CONSOLE_*
# environment variables (the four service URLs, the Kafka bootstrap servers).
# In production it takes a pasted org-service JWT: no registry, no private key.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never
RUN pip install "uv==${UV_VERSION}"
WORKDIR /app

# The console reuses infra's trace and dead-letter code, so it needs infra's
# workspace dependencies too.
COPY pyproject.toml uv.lock ./
COPY shared-schemas/pyproject.toml shared-schemas/
COPY shared-kit/pyproject.toml shared-kit/
COPY agent-service/pyproject.toml agent-service/
COPY infra/pyproject.toml infra/
COPY console/pyproject.toml console/
RUN uv sync --frozen --no-dev --package stayops-console --no-install-workspace

COPY shared-schemas/ shared-schemas/
COPY shared-kit/ shared-kit/
COPY agent-service/ agent-service/
COPY infra/ infra/
COPY console/ console/
RUN uv sync --frozen --no-dev --package stayops-console


FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/app/.venv/bin:$PATH \
    STAYOPS_CONSOLE_HTTP_HOST=0.0.0.0 \
    STAYOPS_CONSOLE_HTTP_PORT=8000
RUN groupadd --system --gid 10001 stayops \
 && useradd --system --uid 10001 --gid stayops --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin stayops
WORKDIR /app
COPY --from=build /app /app
USER stayops
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['STAYOPS_CONSOLE_HTTP_PORT'], timeout=4)"]
CMD ["python", "-m", "stayops_console"]
