SELECT x, y AS x FROM s
