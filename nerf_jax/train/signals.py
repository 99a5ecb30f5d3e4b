"""Why training stops early: a stop signal (SIGINT, SIGTERM) or divergence."""

from __future__ import annotations

import signal
import threading

from nerf_jax import distributed, errors


class StopSignals:
  """SIGINT and SIGTERM while training: a request to stop (``signum``) that
  the training loop honours at the next step by saving a checkpoint; a
  second signal interrupts at once (KeyboardInterrupt). Before the loop
  starts (loading, compiling) there is nothing new to save: a signal stops
  at once (``errors.Interrupted``). Outside the main thread (where Python
  cannot install handlers) nothing changes."""

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.signum = None
    self.training = False  # set by the loop: from then on, save first
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if not self.training:
      raise errors.Interrupted(
          f'stopped by {signal.Signals(signum).name} before training '
          'started; nothing new to save', signum)
    if self.signum is not None:
      raise KeyboardInterrupt
    self.signum = signum

  def __enter__(self) -> 'StopSignals':
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def requested(self) -> bool:
    """Whether any process was asked to stop (a collective when several
    processes train: all must call it at the same step)."""
    return distributed.any_process(self.signum is not None)


class Diverged(errors.UserError):
  """Training stopped: its loss or parameters stopped being finite."""
