-- One end of a trip inside the closed box of the bound parameters. && narrows the rows
-- through the GiST index (its float boxes are rounded outwards, so it never loses a row);
-- the coordinate comparisons then decide exactly, edges included. ST_Intersects with
-- ST_MakeEnvelope is false for a point on a degenerate min = max box, which the API allows.
(
    {column} && ST_MakeEnvelope(%(min_lon)s, %(min_lat)s, %(max_lon)s, %(max_lat)s, 4326)
    AND {exact}
)
