"""rally-gh: run several coding agents on one repository in parallel without them trampling each other."""

from __future__ import annotations

__version__ = "0.1.0"
