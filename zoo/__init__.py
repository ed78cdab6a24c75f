"""The model zoo: plain-PyTorch networks (one family per file), the Lightning tasks that train
them, and the observability callbacks. Importing this package imports no torch."""
