"""Print a TCP port free on 127.0.0.1 now, for a container to listen on (the smoke scripts)."""

import socket

with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    print(probe.getsockname()[1])
