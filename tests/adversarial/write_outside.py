# needs: isolation
# attack: delete or rewrite files outside the working directory (the test's sentinel, the harness)
import os
import shutil

targets = ["__SENTINEL__"]
for path in targets:
    try:
        with open(path, "w") as f:
            f.write("pwned")
    except OSError:
        pass
    try:
        os.remove(path)
    except OSError:
        pass
try:
    shutil.rmtree("__SENTINEL_DIR__")
except OSError:
    pass
try:
    with open("__SENTINEL_DIR__/planted.txt", "w") as f:
        f.write("pwned")
except OSError:
    pass


def has_close_elements(numbers, threshold):
    return None
