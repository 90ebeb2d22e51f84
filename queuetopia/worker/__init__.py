"""The worker (docs/design.md): `worker.py` its lifecycle, `dispatcher.py` its loop
(slots, holds, the due list), `stepper.py` the steps that claim and record,
`runner.py` and `executor.py` the attempts, `verdict.py` what an attempt makes of its
job, `holds.py` and `heartbeat.py` the leases, `house.py` the housekeeping."""

from .worker import Worker

__all__ = ["Worker"]
