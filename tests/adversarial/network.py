# needs: isolation
# attack: open a network connection (to a loopback port the test listens on)
import socket

try:
    s = socket.create_connection(("127.0.0.1", int("__PORT__")), timeout=2)
    s.sendall(b"escaped")
    s.close()
except OSError:
    pass


def has_close_elements(numbers, threshold):
    return None
