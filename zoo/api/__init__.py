"""zoo from Python (a notebook, a script): ``zoo.train``, ``zoo.sweep``, ``zoo.open_run``, ``zoo.compare``.

The same machinery as the commands: the overrides of ``python train.py`` composed by Hydra's compose
API, the same checks (zoo/run/config.py: a mistake raises ``zoo.UserError`` with the sentence the
command prints), the same run folder (taken and locked as zoo/run/folder.py does), the same
``train()`` of train.py. A sweep runs ``python train.py -m`` itself. What a run left is read back
from its folder (``metrics.json``, the TensorBoard events), so a run from the command line opens the
same way (``zoo.open_run``).

- ``launch.py``: ``train`` and ``sweep``, and the progress display in a notebook.
- ``results.py``: ``Run`` (metrics, history, diagnoses, plots), ``open_run`` and ``compare``.
"""
