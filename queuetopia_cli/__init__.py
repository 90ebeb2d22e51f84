"""The `queuetopia` command line."""
