# attack: read stdin hoping to find the judge's nonce, then print it and exit 0
import os
import sys

data = sys.stdin.read()
for fd in range(3, 64):
    try:
        data += os.read(fd, 4096).decode(errors="ignore")
    except OSError:
        pass
print(data)
sys.stdout.flush()
os._exit(0)
