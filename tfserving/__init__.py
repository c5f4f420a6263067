"""tfserving: see README.md."""
