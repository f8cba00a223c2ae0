"""Fixtures and helpers of the application's tests (tests/app)."""
from pathlib import Path


def file_bytes(folder):
    """Every file under `folder` with its bytes (to check that nothing changed)."""
    folder = Path(folder)
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
