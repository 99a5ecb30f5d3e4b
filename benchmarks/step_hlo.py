"""Prints a config's compiled training step as normalised HLO, to compare
two trees (e.g. a `git worktree` of an older commit and this checkout):

  python benchmarks/step_hlo.py configs/tiny.py > now.txt
  (cd ../old && python /path/to/benchmarks/step_hlo.py configs/tiny.py \
      --root . > ../old.txt)
  diff old.txt now.txt

Instruction names and debug metadata are normalised away and the lines
sorted, so two steps that compute the same thing print the same lines but
for source file names and line numbers.
"""

import argparse
import importlib.util
import os
import re
import sys


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('config', help='config file, e.g. configs/tiny.py')
  parser.add_argument('--root', default=os.path.join(
      os.path.dirname(os.path.abspath(__file__)), '..'),
                      help='the tree whose nerf_jax and step_speed.py to use')
  args = parser.parse_args()
  root = os.path.abspath(args.root)
  sys.path[:0] = [root, os.path.join(root, 'benchmarks')]
  import jax  # pylint: disable=g-import-not-at-top
  import step_speed  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location('config', args.config)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  model, tx, state, data = step_speed.synthetic_setup(config)
  step = step_speed.make_step(config, model, tx)
  text = step.lower(state, data, jax.random.PRNGKey(1)).compile().as_text()
  text = re.sub(r', metadata=\{[^}]*\}', '', text)
  text = re.sub(r'^HloModule [^\n]*', '', text)
  text = re.sub(r'%[\w.\-]+', '%x', text)
  print('\n'.join(sorted(l.strip() for l in text.splitlines() if l.strip())))


if __name__ == '__main__':
  main()
