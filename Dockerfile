FROM python:3.11-slim
# bubblewrap and a compiler: sdist-only dependencies are built into wheels in a sandbox
# (the container needs user namespaces for it, e.g. --security-opt seccomp=unconfined).
RUN apt-get update && apt-get install -y --no-install-recommends curl nginx \
        bubblewrap gcc g++ libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY tfmirror ./tfmirror
COPY mirror ./mirror
COPY hub_cache ./hub_cache
COPY sync_jobs ./sync_jobs
COPY verify ./verify
COPY bundle ./bundle
COPY follow ./follow
RUN pip install --no-cache-dir . && useradd --create-home --uid 1000 tfmirror \
    && mkdir -p /var/lib/devpi /var/cache/tfmirror-proxy \
    && chown tfmirror /var/lib/devpi /var/cache/tfmirror-proxy
USER tfmirror
EXPOSE 8000 8080 3141
CMD ["tfmirror", "--help"]
