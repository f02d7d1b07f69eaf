"""Frozen entry point of the Linux build: ``yawbcc-desktop`` and its symbolic link ``yawbcc``.

Linux needs no separate console and windowed executables, so one executable serves both
commands and picks by the name it was started under: the Python archive embedded in each
executable (~36 MB) is then on disk once.  Windows and macOS get two executables built
from yawbcc_cli.py and yawbcc_gui.py instead.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    import multiprocessing

    # The review window segments images in a spawned child process: in a frozen build the
    # child is this executable again, and this call turns it into the worker it should be.
    multiprocessing.freeze_support()
    from yawbcc_desktop.cli import gui_main, main

    started_as = Path(sys.argv[0] if sys.argv and sys.argv[0] else sys.executable).name
    sys.exit(main() if started_as == "yawbcc" else gui_main())
