"""pymoby: the Moby container engine (the daemon behind `docker`) in Python."""

__version__ = "0.1.0"
