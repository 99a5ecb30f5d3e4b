"""Serving the model being trained: the hook the training loop calls.

``train.py --viewer`` builds a ``LiveTraining``, passes it to the training
loop (which calls its ``start``, ``wants`` and ``publish`` and never imports
the viewer) and closes it.
"""

from __future__ import annotations

import math
import time
from typing import Optional

from nerf_jax.viewer import server


class LiveTraining:
  """The hook ``loop.train_and_evaluate(live=...)`` calls: serves the
  model being trained.

  The training loop asks ``wants(step)`` after every step (a comparison),
  and when it answers True hands over a copy of the variables
  (``publish``); rendering happens in the viewer's thread, at most
  ``max_busy`` of the wall time, so training keeps most of the CPU.
  """

  def __init__(self, host: str = '127.0.0.1', port: int = 8080,
               resolution: int = 256, chunk: int = 4096,
               refresh_s: float = 2.0, max_busy: float = 0.25):
    self.host, self.port = host, port
    self.resolution, self.chunk = resolution, chunk
    self.refresh_s, self.max_busy = refresh_s, max_busy
    self.viewer: Optional[server.Viewer] = None
    self._published = -math.inf

  def start(self, model, info, variables, step: int, workdir: str,
            images=None) -> None:
    """Compiles the renderer and starts serving (before the first step);
    ``images``: the training images, in the order of ``info``'s cameras."""
    self.viewer = server.Viewer(
        model, info, variables, step, host=self.host, port=self.port,
        chunk=self.chunk, resolution=self.resolution, workdir=workdir,
        max_busy=self.max_busy, title='nerf_jax (training)')
    print('viewer: compiling the renderer', flush=True)
    self.viewer.compile()
    url = self.viewer.start()
    if images is not None:
      self.viewer.gui.load_training_images(lambda: images)
    print(f'viewer: open {url} (it shows the model as it trains)',
          flush=True)
    self._published = time.monotonic()

  def wants(self, step: int) -> bool:
    """Whether to publish the variables after ``step``: at most every
    ``refresh_s`` seconds, and only while someone is watching."""
    del step
    viewer = self.viewer
    return (viewer is not None and viewer.watched()
            and time.monotonic() - self._published >= self.refresh_s)

  def publish(self, variables, step: int) -> None:
    """Shows ``variables`` (a copy the training step does not donate)."""
    self._published = time.monotonic()
    self.viewer.set_variables(variables, step)

  def close(self) -> None:
    if self.viewer is not None:
      self.viewer.close()

