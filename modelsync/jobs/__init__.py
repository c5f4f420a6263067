"""Batch scoring jobs: what the master (submit, status, result) and the jobs worker (score a
chunk) share. Pure modules: ``model`` (ids, states, bucket paths, task messages, chunk summaries,
result lines, progress), ``planner`` (rows into chunks), ``rows`` (JSON Lines and CSV into rows),
``webhook`` (the HMAC signature); ``queue`` builds the Celery app both sides use (I/O)."""
