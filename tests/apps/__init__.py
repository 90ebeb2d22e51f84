"""Topia modules that tests load in worker subprocesses (`queuetopia worker APP`)."""
