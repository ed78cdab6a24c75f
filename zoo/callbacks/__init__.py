"""Observability as Lightning callbacks, one job per module: gradients, classification, samples,
forecast, history. A run turns them on and off in conf/callbacks/."""
