"""socjax: self-organized criticality in neural networks (Katsnelson, Vanchurin, Westerhout,
arXiv:2107.03402), reimplemented as pure JAX functions.

Modules: config (static config, presets), data (MNIST), model (MLP, loss), train (the compiled
per-example SGD scan, vmapped over runs), runner (host loop), rundir (run-directory format), cli.
"""

__version__ = "0.1.0"
