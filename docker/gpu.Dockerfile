# syntax=docker/dockerfile:1
# The GPU job image: `posapl train`, `posapl eval` and `posapl index build|update` on a CUDA GPU.
#
#   docker build -f docker/gpu.Dockerfile -t posapl-gpu .
#   docker run --gpus all -v ...:/srv/posapl/... posapl-gpu posapl train ...
#
# The PyPI torch and faiss-gpu wheels carry their own CUDA libraries; the CUDA runtime base provides the
# NVIDIA container runtime settings (driver capabilities, required CUDA version) that expose the GPU.
# Data, checkpoints, weights and indexes are mounted under /srv/posapl, never baked in.
FROM nvidia/cuda:13.0.1-runtime-ubuntu24.04 AS base
# Ubuntu 24.04's Python (3.12) is used; apt versions are not pinned because the archive drops superseded
# versions, and the base image tag already fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv tzdata \
    && rm -rf /var/lib/apt/lists/*

FROM base AS build
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
WORKDIR /src
# Dependencies first, from pyproject alone, so editing the code does not reinstall torch.
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && pip install -r requirements.txt
COPY README.md ./
COPY posapl ./posapl
COPY training ./training
COPY index ./index
COPY service ./service
COPY benchmarks ./benchmarks
COPY monitor ./monitor
# Fail the build, not the first job, when the POS tagger's spaCy pipeline is missing.
RUN pip install --no-deps . \
    && python3 -I -c "from posapl.pos import PosTagger; PosTagger().tag(['a road'])"

FROM base AS jobs
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HF_HOME=/srv/posapl/models/huggingface TORCH_HOME=/srv/posapl/models/torch \
    POSAPL_DEVICE=cuda
RUN useradd --system --uid 10001 --user-group --no-log-init --create-home posapl \
    && mkdir -p /srv/posapl/index /srv/posapl/checkpoints /srv/posapl/models /srv/posapl/imagery /srv/posapl/data \
    && chown -R posapl:posapl /srv/posapl
COPY --from=build /opt/venv /opt/venv
COPY --chmod=0755 docker/nightly.py /usr/local/bin/posapl-nightly
USER 10001:10001
WORKDIR /srv/posapl
CMD ["posapl", "--help"]
