"""Developer scripts: local services (``scripts.services``) and the one-command run."""
