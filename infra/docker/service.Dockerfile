# syntax=docker/dockerfile:1
# The image of any StayOps service. Build context: the repository root, e.g.
#   docker build -f infra/docker/service.Dockerfile --build-arg SERVICE=task-service \
#     --build-arg PORT=8001 -t stayops/task-service .
# Runs `python -m <package>`; configuration comes from STAYOPS_* environment variables.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
ARG UV_VERSION=0.13.9
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never
RUN test -n "${SERVICE}" || (echo "build with --build-arg SERVICE=<service dir>" && exit 1)
RUN pip install "uv==${UV_VERSION}"
WORKDIR /app

# Third-party dependencies first, pinned by the workspace lock; this layer is
# rebuilt only when uv.lock or one of these pyproject files changes.
COPY pyproject.toml uv.lock ./
COPY shared-schemas/pyproject.toml shared-schemas/
COPY shared-kit/pyproject.toml shared-kit/
COPY ${SERVICE}/pyproject.toml ${SERVICE}/
RUN uv sync --frozen --no-dev --package ${SERVICE} --no-install-workspace

# Then the workspace members this service needs. uv installs them editable, so
# the service finds its Alembic migrations/ next to src/ (app.MIGRATIONS_DIR).
COPY shared-schemas/ shared-schemas/
COPY shared-kit/ shared-kit/
COPY ${SERVICE}/ ${SERVICE}/
RUN uv sync --frozen --no-dev --package ${SERVICE}


FROM ${PYTHON_IMAGE}
ARG SERVICE
ARG PORT
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/app/.venv/bin:$PATH \
    STAYOPS_HTTP_HOST=0.0.0.0 \
    STAYOPS_HTTP_PORT=${PORT} \
    STAYOPS_SERVICE_MODULE=${SERVICE}
RUN groupadd --system --gid 10001 stayops \
 && useradd --system --uid 10001 --gid stayops --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin stayops
WORKDIR /app
COPY --from=build /app /app
# The one-shot topic provisioning job of docker-compose.yml runs this script.
COPY infra/docker/provision_topics.py /app/ops/provision_topics.py
USER stayops
EXPOSE ${PORT}
HEALTHCHECK --interval=15s --timeout=5s --start-period=40s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['STAYOPS_HTTP_PORT'], timeout=4)"]
# exec: the service is PID 1 and gets SIGTERM for its graceful shutdown.
CMD ["sh", "-c", "exec python -m \"$(echo \"$STAYOPS_SERVICE_MODULE\" | tr - _)\""]
