-- What identifies the weekly summary's content: the database (a re-created one has a new
-- oid), its number of rows and its trips. Rows are never deleted and counts only grow, so
-- every publish that adds a trip changes this.
SELECT
    (SELECT oid FROM pg_database WHERE datname = current_database()) AS database_oid,
    count(*) AS groups,
    coalesce(sum(trips), 0) AS trips
FROM trip_week_summary
