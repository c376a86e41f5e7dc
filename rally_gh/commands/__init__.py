"""One module per command: plain functions taking explicit arguments and returning an exit code."""
