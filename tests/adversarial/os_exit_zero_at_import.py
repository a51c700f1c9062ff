# attack: hard exit with status 0 (no cleanup, no exception) before any test runs
import os

os._exit(0)
