-- option: out_of_orderness_ms=0
SELECT window_start, COUNT(*) AS n, MAX(v) AS top FROM s GROUP BY TUMBLE(ts, INTERVAL '1' SECOND)
