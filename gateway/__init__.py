"""The gateway: a REST front door on every serving node, beside TF Serving (see README.md)."""
