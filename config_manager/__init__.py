"""config_manager: see README.md."""
