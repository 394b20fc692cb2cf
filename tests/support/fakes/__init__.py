"""Fakes for hardware only: a sound card, a virtual-camera backend, a webcam."""
