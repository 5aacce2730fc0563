"""Utilities shared by skebm's modules and by plugin authors."""
