"""Frozen entry point of the headless ``yawbcc`` command (console executable)."""

import sys

from yawbcc_desktop.cli import main

if __name__ == "__main__":
    sys.exit(main())
