"""Lightning tasks: one per learning problem (classify, forecast, language model, adversarial);
they own the loss, the metrics and what is logged. registry.py says which task trains which pairing."""
