# syntax=docker/dockerfile:1
# fraudstream image: `docker build -t fraudstream .` (CPU) or
# `docker build --build-arg VARIANT=gpu -t fraudstream:gpu .` (the `gpu` extra: CuPy with the
# CUDA 12 libraries it loads, from pip; run it with a GPU reserved, e.g. the compose `gpu`
# profile). Both variants start from the same python:3.11-slim: the same interpreter,
# whatever the device. XGBoost's wheel carries its own CUDA kernels, and the NVIDIA
# container toolkit mounts the host's driver (libcuda) at run time; no CUDA base image.
#
# Two stages: the builder installs the project and its pinned dependencies into a virtual
# environment; the runtime copies only that environment, so no compiler, pip cache or
# source tree ships. No dev extras. Runs as an unprivileged numeric user (10001), so
# Kubernetes' runAsNonRoot can verify it.

ARG VARIANT=cpu
ARG PYTHON_IMAGE=python:3.11-slim

# --- bases: the same base for builder and runtime, so the venv's interpreter path matches ---
FROM ${PYTHON_IMAGE} AS base-cpu
# libgomp1: XGBoost's wheel links OpenMP, which the slim image lacks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

FROM base-cpu AS base-gpu
# What the NVIDIA container toolkit reads to mount the driver's compute libraries (the
# nvidia/cuda images set the same); which GPUs, the runtime decides (--gpus, the device
# plugin).
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility

# --- builder ---
FROM base-${VARIANT} AS builder
ARG VARIANT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY stream/ stream/
COPY features/ features/
COPY models/ models/
# the public API and the links that install the three folders as fraudstream.*
COPY fraudstream/ fraudstream/
# A regular (non-editable) install: the packages land in the venv's site-packages.
RUN spec="."; if [ "$VARIANT" = "gpu" ]; then spec=".[gpu]"; fi; \
    /opt/venv/bin/pip install -c constraints.txt "$spec" \
    && /opt/venv/bin/fraudstream --help >/dev/null

# --- runtime ---
FROM base-${VARIANT} AS runtime
RUN groupadd --system --gid 10001 fraudstream \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/fraudstream \
       --create-home --shell /usr/sbin/nologin fraudstream
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/fraudstream \
    MPLCONFIGDIR=/tmp/matplotlib
# The working directory is writable: the label pipeline (faust) keeps its data dir here.
WORKDIR /var/lib/fraudstream
USER 10001:10001
# serve: metrics, /healthz and /readyz; features run: the label pipeline's web port.
EXPOSE 9108 6066
ENTRYPOINT ["fraudstream"]
CMD ["--help"]
