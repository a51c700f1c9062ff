# attack: leave the process group and keep running after the verdict
import os
import time

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(3600)
    os._exit(0)


def has_close_elements(numbers, threshold):
    while True:
        pass
