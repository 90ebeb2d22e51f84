"""The database layer: every statement (`queries`, one file each under `sql/`), the
only code that runs them (`store`), connections and pools (`connections`), the one
place driver errors are translated (`translate`), and LISTEN (`notify`)."""
