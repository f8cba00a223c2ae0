"""Caffe's command-line tools (installed as console scripts by pyproject.toml)."""
