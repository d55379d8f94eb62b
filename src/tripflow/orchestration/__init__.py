"""Airflow building blocks of the `tripdata-process` DAG: the landing trigger and sensor, and
the task callables that run the pipeline's steps."""
