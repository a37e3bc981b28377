-- option: out_of_orderness_ms=0
SELECT symbol, window_start, COUNT(*) AS trades, SUM(qty) AS volume
FROM trades
GROUP BY HOP(ts, INTERVAL '30' SECOND, INTERVAL '1' MINUTE), symbol
