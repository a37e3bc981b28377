-- option: out_of_orderness_ms=5000
-- option: late_data=process
SELECT k, window_start, COUNT(*) AS n FROM s GROUP BY k, TUMBLE(ts, INTERVAL '10' SECOND)
