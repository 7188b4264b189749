"""The native SGD step: a C++ kernel for the CPU, called through the XLA FFI inside the scan.

  sgd.cc    the kernel: one per-example SGD step, exact up to float32 rounding (sparse input,
            lazy weight decay, ReLU sparsity), runs of a vmapped call on threads
  build.py  compiling it at first use into a per-user cache, registering it with XLA
  step.py   the trainer's side: the run in the kernel's form (socjax.step.Stepper)

`socjax train --step auto` (the default) uses it on the CPU when it builds; `--step xla` is the
reference it is tested against (tests/test_native.py).
"""
