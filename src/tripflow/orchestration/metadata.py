"""How Airflow's own processes connect to its metadata database: Airflow imports
`CONNECT_ARGS` through `[database] sql_alchemy_connect_args`, which `airflow_environment`
points here."""

# A scheduler killed with -9 leaves its LocalExecutor's worker processes running, and being
# forks of it they keep its connection to the metadata database open, in whatever transaction
# it was in. Caught holding a lock on the DAG run, it made the restarted scheduler skip that
# run for good: the batch stood still until the stack was stopped. PostgreSQL ends a session
# left this long inside a transaction (Airflow's own last milliseconds), and with it the lock.
CONNECT_ARGS = {"options": "-c idle_in_transaction_session_timeout=60s"}
