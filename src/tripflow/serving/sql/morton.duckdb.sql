-- The Morton key of a point: longitude and latitude scaled to 32 bits each over the whole
-- globe (about 1 cm), their bits interleaved into one 64-bit key. The spread steps move
-- bit i of a 32-bit value to bit 2i.
CREATE TEMP MACRO spread_1(v) AS (v | (v << 16)) & 281470681808895::UBIGINT;
CREATE TEMP MACRO spread_2(v) AS (v | (v << 8)) & 71777214294589695::UBIGINT;
CREATE TEMP MACRO spread_3(v) AS (v | (v << 4)) & 1085102592571150095::UBIGINT;
CREATE TEMP MACRO spread_4(v) AS (v | (v << 2)) & 3689348814741910323::UBIGINT;
CREATE TEMP MACRO spread_5(v) AS (v | (v << 1)) & 6148914691236517205::UBIGINT;
CREATE TEMP MACRO spread(v) AS spread_5(spread_4(spread_3(spread_2(spread_1(v::UBIGINT)))));
CREATE TEMP MACRO scaled(x, low, width) AS
    least(greatest(floor((x - low) / width * 4294967296), 0), 4294967295)::UBIGINT;
CREATE TEMP MACRO morton(lon, lat) AS
    spread(scaled(lon, -180, 360)) | (spread(scaled(lat, -90, 180)) << 1);
