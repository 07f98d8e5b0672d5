"""Test helpers: server control for the capture server and subprocess scripts."""
