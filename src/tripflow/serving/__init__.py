"""The serving copy: the trips as sorted columnar segments that DuckDB answers from.

PostGIS `tripdata` is the system of record; the copy holds what a weekly average needs
(region, datasource, week, time, both points) in Parquet files sorted by region, then by a
Morton key of the origin, so that a box reads only the row groups it touches. Each segment
lists the ingestion batches it holds; a reader takes the segments of exactly the batches
its PostgreSQL snapshot says are published, so both stores answer one state.
"""
