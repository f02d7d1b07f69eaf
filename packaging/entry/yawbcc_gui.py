"""Frozen entry point of the ``yawbcc-desktop`` review application (windowed executable)."""

import sys

from yawbcc_desktop.cli import gui_main

if __name__ == "__main__":
    import multiprocessing

    # The review window segments images in a spawned child process: in a frozen build the
    # child is this executable again, and this call turns it into the worker it should be.
    multiprocessing.freeze_support()
    sys.exit(gui_main())
