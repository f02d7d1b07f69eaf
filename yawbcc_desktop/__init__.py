"""YAWBCC Desktop: review of white blood cell images with a fine-tuned CNN."""

__version__ = "0.1.0"
