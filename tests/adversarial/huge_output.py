# attack: gigabytes of output on both streams
import os

chunk = b"x" * (1 << 20)
for _ in range(4096):
    os.write(1, chunk)
    os.write(2, chunk)
