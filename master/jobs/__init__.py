"""Batch scoring jobs on the master: the table of jobs (SQLite), the submit that streams rows
into chunk objects and sends one task per chunk, and the watcher that follows running jobs
(progress, completion, the webhook, retention). The API is ``master/routes/jobs.py``."""
