"""Unit tests, one file per module of skebm/ (or per concept of one)."""
