DROP TABLE IF EXISTS queuetopia_periodic;
DELETE FROM queuetopia_versions WHERE version = 2;
