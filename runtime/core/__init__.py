"""The bottom layer: application folders, safe file writes, human-readable units, clocks.

Holds nothing specific to the model or to live video; imports only the standard library and
numpy, never another `runtime` subpackage.
"""
