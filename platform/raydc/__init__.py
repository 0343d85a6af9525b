"""raydc: an elastic cluster platform for AI model work on Ray."""

__version__ = "0.1.0"
