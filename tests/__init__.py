"""The test suite: tests/engine/ tests the Caffe runtime (the caffe package, its tools and formats,
the golden set), tests/app/ the DeepPose application (the deeppose package, its scripts and
tools). Shared fixtures and helpers are in tests/conftest.py, those of one side in its own
conftest.py; the data both read lie here: golden/ (conftest.GOLDEN) and data/ (conftest.DATA)."""
