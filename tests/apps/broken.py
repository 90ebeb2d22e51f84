"""An APP module that fails while being imported."""

raise RuntimeError("cannot configure: postgresql://shop:hunter2@db.example/shop is down")
