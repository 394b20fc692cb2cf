"""Downloading the published checkpoints from the Hugging Face Hub into the model store."""
