"""The chaos run finds the process to kill from the connection its request came on."""

from __future__ import annotations

import os
import socket

from tools.chaos_crashes import connected_process


def test_the_process_behind_a_connection_is_found_from_its_ports() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server_port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", server_port)) as client:
            client_port = client.getsockname()[1]
            assert connected_process(client_port, server_port) == os.getpid()
