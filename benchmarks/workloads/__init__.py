"""The workloads, one module each; :mod:`.common` holds what they share."""
