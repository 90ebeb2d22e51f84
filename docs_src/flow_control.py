"""Snooze, and cancelling a job while it runs."""

import time

from queuetopia import Job, JobCancelled, Queuetopia, Snooze

topia = Queuetopia(scope="exports")
ready_at = time.monotonic() + 1.0  # the partner's export is ready in a second


@topia.action("fetch_export", max_blocked=3600)  # snoozing an hour at most, then parked
def fetch_export(report: str) -> str | Snooze:
    if time.monotonic() < ready_at:
        return Snooze(0.25)  # not ready: look again in 0.25 s; no attempt is used
    return f"{report}.csv"


@topia.action("crawl", timeout=3600)
def crawl(site: str, job: Job) -> int:
    pages = 0
    while True:  # until someone stops it
        pages += 1
        time.sleep(0.01)


topia.migrate()
sales = fetch_export.delay("tenant:7", report="sales")
stock = fetch_export.delay("tenant:7", report="stock")  # waits behind sales, in order
crawling = crawl.delay("site:example.org", site="example.org")
with topia.worker():
    print(sales.wait(timeout=10), stock.wait(timeout=10))  # sales.csv stock.csv
    outcomes = [a.outcome for a in topia.get_job(sales.id).attempt_log]
    print(topia.get_job(sales.id).attempts, sorted(set(outcomes)))  # 1 ['done', 'snoozed']

    while topia.get_job(crawling.id).state != "running":
        time.sleep(0.01)
    asked = topia.cancel_job(crawling.id, reason="the site asked us to stop", by="ops")
    print(asked.state)  # running: its worker stops it now
    try:
        crawling.wait(timeout=10)
    except JobCancelled:
        job = topia.get_job(crawling.id)
        print(job.state, job.error)  # cancelled cancelled: the site asked us to stop
        print(job.attempt_log[-1].outcome, job.operator_log[-1].by)  # cancelled ops
