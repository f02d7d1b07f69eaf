"""The window's widgets, one per file; each knows its models and signals, not the window."""
