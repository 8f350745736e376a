"""The DNS side: wire details (EDNS, ECS, truncation), answers, and the UDP/TCP server."""
