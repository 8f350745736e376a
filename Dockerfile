# gslb in a slim image: answers on 0.0.0.0:53 (UDP and TCP) for the zones in /etc/gslb/zones.
#   docker build -t gslb . && docker run --rm -p 5353:53/udp -p 5353:53/tcp gslb
#   dig @127.0.0.1 -p 5353 www.gslb.example.com A
# Mount your own zones over /etc/gslb/zones (and a config over /etc/gslb/gslb.yaml).
FROM python:3.12-slim

WORKDIR /src
COPY pyproject.toml README.md ./
COPY gslb ./gslb
COPY zones ./zones
COPY geodata ./geodata
RUN pip install --no-cache-dir . && rm -rf /src

COPY zones /etc/gslb/zones
COPY deploy/gslb.yaml /etc/gslb/gslb.yaml

# Docker (20.10+) lets unprivileged users bind ports below 1024 inside a container
# (net.ipv4.ip_unprivileged_port_start=0), so the server need not run as root.
RUN useradd --system --no-create-home gslb
USER gslb
EXPOSE 53/udp 53/tcp
ENTRYPOINT ["gslb"]
CMD ["serve", "--config", "/etc/gslb/gslb.yaml"]
