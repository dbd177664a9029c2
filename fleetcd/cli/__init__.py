"""Thin click commands for operators and CI: each builds settings and calls one library function."""
