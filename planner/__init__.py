"""From the workflow model to an executable plan (jobs, DAG, reuse decisions)."""
