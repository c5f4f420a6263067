"""master: see README.md."""
