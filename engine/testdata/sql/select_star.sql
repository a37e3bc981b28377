SELECT * FROM orders WHERE quantity >= 2
