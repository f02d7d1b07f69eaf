"""YAWBCC Desktop: review of white blood cell images with a fine-tuned CNN."""

from importlib import metadata

try:
    # One source of the version: pyproject.toml, through the installed package's metadata
    # (the PyInstaller build carries that metadata too).
    __version__ = metadata.version("yawbcc-desktop")
except metadata.PackageNotFoundError:  # a bare checkout on sys.path, never installed
    __version__ = "0+unknown"
