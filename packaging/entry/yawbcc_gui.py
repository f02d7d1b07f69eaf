"""Frozen entry point of the ``yawbcc-desktop`` review application (windowed executable)."""

import sys

from yawbcc_desktop.cli import gui_main

if __name__ == "__main__":
    sys.exit(gui_main())
