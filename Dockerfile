# gslb in a slim image: DNS on 0.0.0.0:53 (UDP and TCP), the HTTP API on 0.0.0.0:8053, the zones
# in /etc/gslb/zones, state and cache owned by the unprivileged user `gslb` (uid and gid 10053).
#   docker build -t gslb .
#   docker run --rm -p 5353:53/udp -p 5353:53/tcp -p 8053:8053 -e GSLB_API_TOKEN="$(openssl rand -hex 32)" gslb
#   dig @127.0.0.1 -p 5353 www.gslb.example.com A
#   curl -s http://127.0.0.1:8053/status
# Mount your own zones over /etc/gslb/zones (and a config over /etc/gslb/gslb.yaml). /status,
# /explain and /metrics are readable by anyone who reaches port 8053; /admin needs the token
# (GSLB_API_TOKEN, or api_token_file: in the config, for example a mounted secret).

ARG PYTHON_IMAGE=python:3.12-slim

# -- build: everything that needs pip (and, for the optional C extension, a compiler) --------------
FROM ${PYTHON_IMAGE} AS build
# gcc builds the optional C extension (batched UDP I/O, gslb/dns/_udpbatch.c); nothing of it
# reaches the final image but the built module inside the virtualenv. The versions are the base
# image's Debian release's: they change with PYTHON_IMAGE, not here.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/gslb
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY gslb ./gslb
COPY zones ./zones
COPY geodata ./geodata
# pip install succeeds without the extension (it is optional); the image must have it, so the
# import is checked here.
RUN /opt/gslb/bin/pip install ".[redis]" \
 && /opt/gslb/bin/python -c "import gslb.dns._udpbatch" \
 && /opt/gslb/bin/gslb --version

# -- run: the virtualenv, the config, and nothing to build with ------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/gslb/bin:$PATH \
    GSLB_CACHE_DIR=/var/cache/gslb \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Docker (20.10+) lets unprivileged users bind ports below 1024 inside a container
# (net.ipv4.ip_unprivileged_port_start=0), so the server need not run as root.
# A fixed numeric id: Kubernetes' runAsNonRoot checks it, and a host can own mounted state with it.
RUN groupadd --system --gid 10053 gslb \
 && useradd --system --uid 10053 --gid gslb --home-dir /var/lib/gslb --no-create-home --shell /usr/sbin/nologin gslb \
 && install -d -o gslb -g gslb -m 0750 /var/lib/gslb /var/cache/gslb
COPY --from=build /opt/gslb /opt/gslb
COPY zones /etc/gslb/zones
COPY deploy/gslb.yaml /etc/gslb/gslb.yaml
USER 10053:10053
WORKDIR /var/lib/gslb
EXPOSE 53/udp 53/tcp 8053/tcp
# /healthz answers 200 once DNS is answered from a loaded configuration. The region tables are
# compiled on the first start (a few seconds; cached in /var/cache/gslb for the next one).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8053/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["gslb"]
CMD ["serve", "--config", "/etc/gslb/gslb.yaml"]
