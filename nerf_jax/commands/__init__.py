"""The command lines: train, render, view, export, prepare.

Each module defines its absl flags when imported and a ``main()`` that parses
``sys.argv`` and runs: the console scripts ``nerf-jax-<name>`` and the
repository's thin ``<name>.py`` scripts call it. Import only the one command
you run (the flags of two would collide).
"""

import sys

from absl import flags


def adopt_main(module_name: str) -> None:
  """Lets absl's ``--help`` describe the command ``module_name`` as its own
  script: the module's docstring and the flags it defines, whichever script
  (``nerf-jax-<name>``, ``python <name>.py``) is ``__main__``.

  absl shows ``__main__``'s docstring and the key flags of ``sys.argv[0]``;
  the flags are defined in the command's module instead.
  """
  module = sys.modules[module_name]
  sys.modules['__main__'].__doc__ = module.__doc__
  for flag in flags.FLAGS.get_key_flags_for_module(module_name):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
