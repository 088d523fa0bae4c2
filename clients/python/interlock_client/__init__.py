"""Interlock client library."""
