"""rally-gh: run several coding agents on one repository in parallel without them trampling each other."""

from __future__ import annotations

__version__ = "0.1.0"

# Where a user reads the docs: a pip install has no docs/ folder, so hints name pages here.
PROJECT_URL = "https://github.com/rally-gh/rally-gh"


def docs_url(page: str) -> str:
    """The web address of ``docs/<page>`` for this version (``rally-yml.md#patterns``)."""
    return f"{PROJECT_URL}/blob/v{__version__}/docs/{page}"
