"""boxal's workers: the detection engine (``worker.engine``) and the Celery tasks that run each round."""
