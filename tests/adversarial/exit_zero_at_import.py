# attack: exit with status 0 before any test runs
import sys

sys.exit(0)
