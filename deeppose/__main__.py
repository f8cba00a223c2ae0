"""`python -m deeppose train [options]`: the DeepPose pipeline (deeppose/driver.py; --help lists the options)."""
import sys

from . import driver

COMMANDS = {"train": driver.main}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python -m deeppose {'|'.join(COMMANDS)} [options] (--help after the command lists them)")
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
