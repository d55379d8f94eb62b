-- One end of a trip possibly inside a closed envelope, through the GiST index alone: a
-- superset (float boxes are rounded outwards) that an exact test then narrows.
{column} && ST_MakeEnvelope({min_lon}, {min_lat}, {max_lon}, {max_lat}, 4326)
