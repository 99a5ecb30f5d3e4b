"""A run's metrics log: metrics.jsonl (one strict JSON record a line) and the
TensorBoard event files beside it."""

from __future__ import annotations

import json
import math
import os

import numpy as np

from nerf_jax import faults
from nerf_jax.io import inputs, outputs
from nerf_jax.runs import rundir


def read_metrics(path: str) -> list:
  """The records of a metrics.jsonl (a half-written line is skipped)."""
  if not os.path.exists(path):
    return []
  records = []
  with open(path, errors='replace') as f:
    for line in f:
      try:
        record = json.loads(line)
      except (ValueError, RecursionError):  # RecursionError: nested deeply
        continue
      if isinstance(record, dict) and not inputs.json_problem(record):
        records.append(record)
  return records


def _strict(value):
  """JSON has no NaN or infinity: non-finite numbers are written as null."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: _strict(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_strict(v) for v in value]
  return value


class MetricsWriter:
  """Appends records to ``<workdir>/metrics.jsonl``, one JSON object a line,
  and (``tensorboard``) to TensorBoard event files beside it.

  Records are strict JSON (non-finite numbers become null). Each line is
  one ``write`` of an append-mode file, so a crash leaves at most one
  half-written last line, which ``truncate`` removes on resuming.
  ``enabled=False`` (processes other than 0 of a multi-process run) writes
  nothing.
  """

  def __init__(self, workdir: str, enabled: bool = True,
               tensorboard: bool = False):
    self.path = os.path.join(workdir, rundir.METRICS_FILE)
    self.enabled = enabled
    self.events = TensorBoardWriter(workdir) if (
        enabled and tensorboard) else None

  def truncate(self, step: int) -> None:
    """Drops records logged after ``step`` (a resumed run logs them again)
    and any half-written line."""
    if self.events is not None:
      self.events.purge_step = step + 1
    if not self.enabled or not os.path.exists(self.path):
      return
    with open(self.path, 'rb') as f:
      raw = f.read()
    records = read_metrics(self.path)
    kept = [r for r in records if r.get('step', 0) <= step]
    lines = raw.splitlines()
    if (len(kept) != len(lines) or (raw and not raw.endswith(b'\n'))):
      outputs.write_text_atomic(self.path, ''.join(
          json.dumps(_strict(r), allow_nan=False) + '\n' for r in kept))

  def write(self, record: dict) -> None:
    if not self.enabled:
      return
    line = json.dumps(_strict(record), allow_nan=False) + '\n'
    faults.maybe_fail('metrics', record.get('step'), path=self.path,
                      partial=line[:len(line) // 2])
    with open(self.path, 'a') as f:
      f.write(line)
    if self.events is not None:
      self.events.scalars(record)

  def image(self, tag: str, image, step: int) -> None:
    """An image f32[h, w, 3] in [0, 1] (TensorBoard only)."""
    if self.events is not None:
      self.events.image(tag, image, step)

  def close(self) -> None:
    if self.events is not None:
      self.events.close()


class TensorBoardWriter:
  """TensorBoard event files (tensorboardX) beside metrics.jsonl, so that
  ``tensorboard --logdir runs`` shows every run: each record's numbers as
  scalars ``<split>/<key>`` (train/loss, train/lr, train/rays_per_s,
  val/psnr, ...) and the evaluation previews as images.

  The file is opened at the first write, so a run that fails to start
  leaves none. A resumed session opens its file with ``purge_step`` (the
  restored step + 1): TensorBoard then drops what a killed session logged
  after that checkpoint, as ``MetricsWriter.truncate`` does for
  metrics.jsonl. Every write is flushed: a crash loses nothing logged.
  """

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.purge_step = None
    self._writer = None

  def _open(self):
    if self._writer is None:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._writer = SummaryWriter(logdir=self.workdir,
                                   purge_step=self.purge_step)
    return self._writer

  def scalars(self, record: dict) -> None:
    step, split = record.get('step'), record.get('split', 'train')
    if step is None:
      return
    writer = self._open()
    for key, value in record.items():
      if (key not in ('step', 'split') and isinstance(value, (int, float))
          and not isinstance(value, bool) and math.isfinite(value)):
        writer.add_scalar(f'{split}/{key}', value, int(step))
    writer.flush()

  def image(self, tag: str, image, step: int) -> None:
    writer = self._open()
    writer.add_image(tag, np.clip(np.asarray(image, np.float32), 0, 1),
                     int(step), dataformats='HWC')
    writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None
