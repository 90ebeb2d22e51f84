DROP TABLE IF EXISTS queuetopia_periodic;
