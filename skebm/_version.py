"""The version of skebm (read by setup.cfg and stored in pickles)."""

__version__ = "0.1.0"
