"""remote_model_puller: see README.md."""
