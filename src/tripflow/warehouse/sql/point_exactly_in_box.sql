-- One end of a trip inside the closed box of the bound parameters, decided on the exact
-- coordinates alone (edges included), without asking the index.
(
    ST_X({column}) BETWEEN %(min_lon)s AND %(max_lon)s
    AND ST_Y({column}) BETWEEN %(min_lat)s AND %(max_lat)s
)
