"""The run itself: config checks and the CLI, run folder and checkpoints, resume and reliability,
DDP, reporting."""
