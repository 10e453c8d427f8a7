# syntax=docker/dockerfile:1
# The search API image: uvicorn serving service.app on port 8000.
#
#   docker build -f docker/api.Dockerfile -t posapl-api .                       # CPU (default)
#   docker build -f docker/api.Dockerfile --build-arg RUNTIME=cuda -t posapl-api:cuda .   # GPU serving
#
# Model weights, checkpoints and the index are never part of the image: they are mounted under /srv/posapl
# (see docker-compose.yml). The spaCy English model is a pip dependency of the project, so it is installed
# here at build time and the container needs no download to start.
ARG RUNTIME=cpu

FROM python:3.11.14-slim-bookworm AS base-cpu
ENV POSAPL_DEVICE=cpu

FROM nvidia/cuda:13.0.1-runtime-ubuntu24.04 AS base-cuda
# Ubuntu 24.04's Python (3.12) is used; apt versions are not pinned because the archive drops superseded
# versions, and the base image tag already fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv tzdata \
    && rm -rf /var/lib/apt/lists/*
ENV POSAPL_DEVICE=cuda

# base-${RUNTIME} is one of the two tagged stages above, which hadolint cannot resolve.
# hadolint ignore=DL3006
FROM base-${RUNTIME} AS build
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
WORKDIR /src
# Dependencies first, from pyproject alone, so editing the code does not reinstall torch. EXTRAS adds optional
# dependency groups (comma-separated), e.g. EXTRAS=ray for the Ray cluster image.
ARG EXTRAS=""
COPY pyproject.toml ./
RUN python3 -c "import os, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = [d for e in os.environ['EXTRAS'].split(',') if e for d in p['optional-dependencies'][e]]; \
print('\n'.join(p['dependencies'] + extras))" > requirements.txt \
    && pip install -r requirements.txt
COPY README.md ./
COPY posapl ./posapl
COPY training ./training
COPY index ./index
COPY service ./service
COPY benchmarks ./benchmarks
COPY monitor ./monitor
# Fail the build, not the first request, when the POS tagger's spaCy pipeline is missing.
RUN pip install --no-deps . \
    && python3 -I -c "from posapl.pos import PosTagger; PosTagger().tag(['a road'])"

# hadolint ignore=DL3006
FROM base-${RUNTIME} AS api
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HF_HOME=/srv/posapl/models/huggingface TORCH_HOME=/srv/posapl/models/torch \
    POSAPL_INDEX_ROOT=/srv/posapl/index \
    WEB_CONCURRENCY=1
RUN useradd --system --uid 10001 --user-group --no-log-init --create-home posapl \
    && mkdir -p /srv/posapl/index /srv/posapl/checkpoints /srv/posapl/models /srv/posapl/imagery \
    && chown -R posapl:posapl /srv/posapl
COPY --from=build /opt/venv /opt/venv
COPY --chmod=0755 docker/nightly.py /usr/local/bin/posapl-nightly
USER 10001:10001
WORKDIR /srv/posapl
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
# Worker processes: WEB_CONCURRENCY (uvicorn reads it); each worker loads its own model and index, polls for new
# index versions by itself and takes cores // WEB_CONCURRENCY encoder threads. A worker's health ping can wait
# for seconds while it loads the model, hence 60 s before uvicorn replaces it.
CMD ["uvicorn", "--factory", "service.app:app_from_env", "--host", "0.0.0.0", "--port", "8000", "--timeout-graceful-shutdown", "20", "--timeout-worker-healthcheck", "60"]
