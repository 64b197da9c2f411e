# LatentBrush: container image for Hugging Face Spaces (README front matter: sdk: docker, app_port: 7860).
#
#   docker build -t latentbrush .
#   docker run --rm -p 7860:7860 latentbrush            # then open http://localhost:7860
#
# Dependencies are installed by the Makefile's own `make install` (python3.11 -m venv .venv, then
# `pip install -r requirements.txt`), so the image gets exactly what `make run` gets on a dev machine.
# Bundled models in assets/models/ are copied in; the app runs offline. Runs as uid 1000 (HF Spaces).
#
# CPU vs CUDA (NOTE: this Dockerfile is linted by tests/test_deploy.py but has not been built: the
# machine it was written on has no Docker daemon):
# - Default: pip resolves torch==2.14.1 from PyPI, whose linux/x86_64 wheel is the CUDA build
#   (2.14.1+cu130, CUDA 13 runtime libraries shipped as nvidia-* wheels). So the default image is already
#   the CUDA variant: `docker run --gpus all ...` on a host with an NVIDIA driver that supports CUDA 13 and
#   the NVIDIA Container Toolkit uses the GPU. No nvidia/cuda base image is needed (and those Ubuntu
#   images ship Python 3.10/3.12, not the 3.11 the Makefile asks for).
# - CPU-only (much smaller; the right choice for free CPU Spaces):
#     docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -t latentbrush:cpu .
#   The URL is exported as PIP_EXTRA_INDEX_URL for the `make install` step only; the command itself is
#   unchanged. (Other CUDA builds: e.g. .../whl/cu126 -- check the index has torch 2.14.1 for it.)

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

# `make` runs the Makefile's install step below. No version pin: Debian's stable `make` is what we want
# (hadolint DL3008 is ignored for this line in tests/test_deploy.py).
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

# Hugging Face Spaces runs containers as uid 1000; give that user a home for caches (~/.cache/latentbrush).
# USER is numeric (= app) so runtimes that enforce "non-root" can verify it without reading /etc/passwd.
RUN groupadd --gid 1000 app \
    && useradd --create-home --uid 1000 --gid 1000 --shell /bin/bash app
USER 1000:1000
ENV HOME=/home/app \
    PATH=/home/app/.local/bin:$PATH
WORKDIR /home/app/latentbrush

# Install dependencies first (a cached layer until these files change). requirements-dev.txt is copied
# only because the Makefile hashes it into its install stamp; `make install` does not install it.
COPY --chown=app:app Makefile requirements.txt requirements-dev.txt ./
ARG TORCH_INDEX_URL=""
RUN if [ -n "$TORCH_INDEX_URL" ]; then export PIP_EXTRA_INDEX_URL="$TORCH_INDEX_URL"; fi \
    && make install

# The application and its bundled models (see .dockerignore for what is left out).
COPY --chown=app:app . .

EXPOSE 7860
ENV GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860
CMD [".venv/bin/python", "-m", "app", "--host", "0.0.0.0", "--port", "7860"]
