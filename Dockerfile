# bnno on the official TensorFlow GPU image.
#
#   docker build -t bnno .
#   docker run --gpus all --rm -v /path/to/tfds:/data -v /path/to/logs:/logs \
#       bnno train birealnet --dataset imagenet2012 --hparams-set bop \
#       --data-dir /data --output-dir /logs/birealnet-bop
#
# docs/docker-and-clusters.md walks through data preparation, resuming, TensorBoard,
# several GPUs and Slurm clusters.

# The image brings TensorFlow 2.21 built for CUDA, with the CUDA and cuDNN libraries it
# was tested with; bnno adds only pure-Python packages on top.
FROM tensorflow/tensorflow:2.21.0-gpu

# Where the source lives; pass --build-arg SOURCE_URL=<repository URL> when publishing.
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="bnno" \
      org.opencontainers.image.description="Binarized neural networks trained with Bop: reproduces 'Latent Weights Do Not Exist' (Helwegen et al., NeurIPS 2019) on TensorFlow 2.21 / Keras 3" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE_URL}"

# PYTHONUNBUFFERED: progress lines reach `docker logs` and Slurm's output file at once.
# TF_CPP_MIN_LOG_LEVEL: hide TensorFlow's C++ start-up chatter (CUDA probing, CPU features).
# TFDS_DATA_DIR: tensorflow-datasets keeps prepared data sets on the /data volume.
ENV PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    TFDS_DATA_DIR=/data

# bash with pipefail: a failing command on the left of a pipe fails the build.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# A non-root user, uid/gid 1000 (the first user of most Linux machines, so files on
# bind-mounted volumes belong to them). Some Ubuntu base images already have a user
# with uid 1000 ("ubuntu"): it is replaced. /data and /logs are made here, owned by
# bnno, because a VOLUME's content and ownership are fixed when VOLUME is declared.
# HOME is world-writable (sticky) so that any --user uid can keep caches there.
# This layer does not depend on bnno's source, so it stays cached across code changes.
RUN set -eu; \
    old_user="$(getent passwd 1000 | cut -d: -f1 || true)"; \
    if [ -n "$old_user" ]; then userdel "$old_user"; rm -rf "/home/${old_user:?}"; fi; \
    old_group="$(getent group 1000 | cut -d: -f1 || true)"; \
    if [ -n "$old_group" ]; then groupdel "$old_group"; fi; \
    groupadd --gid 1000 bnno; \
    useradd --uid 1000 --gid 1000 --create-home --home-dir /home/bnno --shell /bin/bash bnno; \
    mkdir -p /data /logs; \
    chown bnno:bnno /data /logs; \
    chmod 1777 /home/bnno; \
    ln -s /logs /home/bnno/bnno-logs

# Only what `pip install .` reads (setup.py reads README.md and installs hparams/, the
# hyperparameter sets, into the package); .dockerignore keeps the rest of the
# repository out of the build context.
WORKDIR /tmp/bnno-src
COPY pyproject.toml setup.py README.md ./
COPY bnno ./bnno
COPY hparams ./hparams

# Install bnno (not editable: the source directory is removed afterwards) next to the
# image's TensorFlow. pip keeps an installed version that satisfies a requirement, and
# bnno asks for tensorflow>=2.21,<2.22; the constraints file makes that a guarantee:
# the image's own tensorflow, keras and NVIDIA wheels (whatever is installed of them)
# are pinned to the versions found, so no resolver decision can swap in another build
# of TensorFlow. The build stops if the image's TensorFlow is not the distribution
# "tensorflow" 2.21.x, since pip would then add a second TensorFlow.
# PIP_BREAK_SYSTEM_PACKAGES: the image installs TensorFlow into the system Python as
# root; newer pips refuse that (PEP 668) unless told, older ones ignore the variable.
RUN set -eu; \
    export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore; \
    tensorflows='^(tensorflow|tensorflow[-_](cpu|gpu|intel)|tf[-_]nightly([-_](cpu|gpu))?)=='; \
    python3 -m pip list --format=freeze \
        | grep -Ei "$tensorflows|^(keras|nvidia[-_][a-z0-9_-]+)==" > /tmp/constraints.txt || true; \
    echo "Keeping these packages of the image:"; cat /tmp/constraints.txt; \
    grep -Eiq '^tensorflow==2[.]21[.]' /tmp/constraints.txt \
        || { echo "The base image has no 'tensorflow' 2.21.x; use a tensorflow/tensorflow:2.21.x-gpu image." >&2; exit 1; }; \
    python3 -m pip install --no-cache-dir --constraint /tmp/constraints.txt .; \
    python3 -m pip list --format=freeze | grep -Ei "$tensorflows" > /tmp/tensorflows.txt || true; \
    grep -Ei "$tensorflows" /tmp/constraints.txt | cmp -s - /tmp/tensorflows.txt \
        || { echo "pip changed the image's TensorFlow:" >&2; cat /tmp/tensorflows.txt >&2; exit 1; }; \
    bnno --version; \
    rm -rf /tmp/bnno-src /tmp/constraints.txt /tmp/tensorflows.txt

# HOME is set explicitly, not left to Docker's lookup of the user, so that `~/bnno-logs`
# (bnno's default --output-prefix and `bnno tensorboard --logdir`) is the link to /logs
# made above also when the container runs as another uid (--user) without a passwd entry.
# The uid, not the name: orchestrators (Kubernetes' runAsNonRoot) can then see that
# it is not root without reading the image's /etc/passwd.
ENV HOME=/home/bnno
USER 1000:1000
WORKDIR /home/bnno

# Prepared data sets (tfds layout, plus downloads/manual for ImageNet's tar files) and
# run directories: both belong on the host, not in the container's writable layer.
VOLUME ["/data", "/logs"]

ENTRYPOINT ["bnno"]
CMD ["--help"]
