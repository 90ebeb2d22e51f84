"""A worker in your own process, with Prometheus metrics on /metrics (what
`queuetopia worker --metrics-port` does)."""

import os

from queuetopia import Queuetopia
from queuetopia.metrics import PrometheusMetrics

topia = Queuetopia(scope="shop")


@topia.action("send_receipt")
def send_receipt(order_id: int) -> None: ...


if __name__ == "__main__":
    worker = topia.worker(concurrency=8)
    metrics = PrometheusMetrics(topia)
    worker.observers.append(metrics)  # counts attempts and their durations
    metrics.serve(int(os.environ.get("METRICS_PORT", "9464")))
    worker.run()  # until SIGTERM or SIGINT
