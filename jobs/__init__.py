"""The jobs worker (``modelsync worker``): Celery tasks that score a job's chunks through the
node's own TF Serving and write each chunk's result to the bucket once."""
