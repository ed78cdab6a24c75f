"""Networks in plain PyTorch, one family per module, each built from the data spec."""
