"""PyInstaller runtime hook: give a windowed build somewhere to write.

A windowed executable on Windows (and an app started from a desktop launcher) has no
console, so ``sys.stdout``/``sys.stderr`` are None and anything that calls ``.write`` on
them (Keras progress bars and warnings, logging handlers, the traceback of a failed
start) would raise.  They get a log file in the user's log folder instead (never the
install folder), or os.devnull when that folder cannot be written.  Runs before the
application's code; a run with a console keeps its streams untouched.
"""


def _yawbcc_redirect_missing_streams():
    import os
    import sys
    import time

    if sys.stdout is not None and sys.stderr is not None:
        return
    try:
        import platformdirs

        folder = platformdirs.user_log_dir("yawbcc-desktop", appauthor=False)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "yawbcc-desktop.log")
        if os.path.exists(path) and os.path.getsize(path) > 2_000_000:
            os.replace(path, path + ".1")  # one previous log is kept; neither grows past ~2 MB
        stream = open(path, "a", encoding="utf-8", errors="replace", buffering=1)
        stream.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {sys.executable} pid {os.getpid()}\n")
    except Exception:  # read-only home or an odd platform: output is dropped, the app still runs
        stream = open(os.devnull, "w", encoding="utf-8")
    if sys.stdout is None:
        sys.stdout = stream
    if sys.stderr is None:
        sys.stderr = stream


_yawbcc_redirect_missing_streams()
