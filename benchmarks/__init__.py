"""Benchmarks.

Medprobe against the usual notebook pipeline, measured on the same machine and data.
"""
