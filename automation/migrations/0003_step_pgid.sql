-- The process group a running step's program leads, so an instance taking
-- over after a crash can stop what the dead instance left running.
ALTER TABLE steps ADD COLUMN pgid BIGINT;
