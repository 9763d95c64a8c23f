"""Free TCP ports on the loopback interface, for stacks that must not collide."""

from __future__ import annotations

import socket

from stayops_infra.errors import StackError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def free_port_pair() -> int:
    """A free port whose successor is free too: Kafka's controller listens on port + 1."""
    for _ in range(50):
        port = free_port()
        if port >= 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise StackError("no two consecutive free TCP ports found for Kafka")
