"""The web viewer's frame rate, and what serving it costs a training.

  .venv/bin/python benchmarks/viewer_fps.py fps --ckpt runs/tiny runs/tiny_fast
  .venv/bin/python benchmarks/viewer_fps.py training --config tiny.py \\
      --config_args=--config.data.path=../shared/data/tiny_lego.npz

``fps``: frames per second of the viewer's render path (rays cast and
rendered in fixed chunks, colour mapped, JPEG-encoded as sent to the
browser) for a camera orbiting the scene: still frames at ``--resolution``
(256x256) and the quarter-resolution frames shown while the camera moves.

``training``: training steps per second without and with ``--viewer``
(``viewer.live.LiveTraining``) and a client whose camera moves all the time
(a new camera every 50 ms: the viewer renders as much as it may). Runs
alternate, off / on / off / on, in fresh workdirs of one process; the rate
is steps over the loop's clock (compilation and evaluation excluded).
"""

import argparse
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def measure_fps(ckpt: str, resolution: int, frames: int, chunk: int) -> None:
  from viser import _scene_api  # pylint: disable=g-import-not-at-top
  from nerf_jax.cameras import paths  # pylint: disable=g-import-not-at-top
  from nerf_jax.runs import load  # pylint: disable=g-import-not-at-top
  from nerf_jax.viewer import cameras  # pylint: disable=g-import-not-at-top
  from nerf_jax.viewer import frames as frames_lib  # pylint: disable=g-import-not-at-top
  from nerf_jax.viewer import server  # pylint: disable=g-import-not-at-top
  config, info, model, variables, step = load.load_trained(ckpt)
  view = server.Viewer(model, info, variables, step, chunk=chunk,
                       resolution=resolution)
  view.compile()
  poses = paths.orbit_poses(frames, 30.0, info.camera_radius)
  fov = cameras.vertical_fov(info.intrinsics)
  for level in ('full', 'preview'):
    request = frames_lib.ViewRequest(c2w=poses[0], fov_y=fov, aspect=1.0)
    view.render_request(request, level)  # warm-up
    start = time.perf_counter()
    for pose in poses:
      request = frames_lib.ViewRequest(c2w=pose, fov_y=fov, aspect=1.0)
      image, _ = view.render_request(request, level)
      _scene_api._encode_image_binary(image, 'jpeg', jpeg_quality=90)  # pylint: disable=protected-access
    seconds = (time.perf_counter() - start) / len(poses)
    h, w = image.shape[:2]
    print(f'{config.name} (step {step}) {level} {w}x{h}, chunk '
          f'{view.renderer.chunks[level == "full"]}: {1 / seconds:.2f} '
          f'frames/s ({seconds * 1000:.0f} ms/frame)', flush=True)


class _DraggingClient:
  """A fake browser whose camera moves on a circle every ``period_s``."""

  def __init__(self, view, info, period_s: float = 0.05):
    import types  # pylint: disable=g-import-not-at-top
    from nerf_jax.cameras import paths  # pylint: disable=g-import-not-at-top
    from nerf_jax.viewer import cameras  # pylint: disable=g-import-not-at-top
    self.frames, self.stopped = 0, False
    self.poses = paths.orbit_poses(360, 30.0, info.camera_radius)
    self.client = types.SimpleNamespace(client_id=1)
    wxyz, position = cameras.opengl_to_opencv(self.poses[0])
    self.client.camera = types.SimpleNamespace(
        wxyz=wxyz, position=position, aspect=1.0, client=self.client,
        fov=cameras.vertical_fov(info.intrinsics), on_update=lambda cb: None)
    self.client.scene = types.SimpleNamespace(
        set_background_image=self._receive)
    view._on_connect(self.client)  # pylint: disable=protected-access
    self.view, self.period_s = view, period_s
    threading.Thread(target=self._drag, daemon=True).start()

  def _receive(self, image, **_):
    del image
    self.frames += 1

  def _drag(self):
    from nerf_jax.viewer import cameras  # pylint: disable=g-import-not-at-top
    i = 0
    while not self.stopped:
      i += 1
      cam = self.client.camera
      cam.wxyz, cam.position = cameras.opengl_to_opencv(
          self.poses[i % len(self.poses)])
      self.view._on_camera(cam)  # pylint: disable=protected-access
      time.sleep(self.period_s)


def measure_training(config_file: str, config_args: list, steps: int,
                     repeats: int, max_busy: float, resolution: int) -> None:
  import step_speed  # pylint: disable=g-import-not-at-top
  from nerf_jax.runs import metrics_log, rundir  # pylint: disable=g-import-not-at-top
  from nerf_jax.train import loop  # pylint: disable=g-import-not-at-top
  from nerf_jax.viewer import live as live_lib  # pylint: disable=g-import-not-at-top
  config = step_speed.load_config_file(config_file)
  for override in [a[len('--config.'):] for a in config_args] + [
      f'train.max_steps={steps}', f'eval.every={steps}',
      f'checkpoint.every={steps}']:
    step_speed.apply_override(config, override)

  class Watched(live_lib.LiveTraining):

    def start(self, model, info, variables, step, workdir, images=None):
      super().start(model, info, variables, step, workdir, None)
      self.client = _DraggingClient(self.viewer, info)

  rates = {False: [], True: []}
  frames = []
  for _ in range(repeats):
    for with_viewer in (False, True):
      workdir = tempfile.mkdtemp(prefix='viewer_bench_')
      live = (Watched(port=0, resolution=resolution, max_busy=max_busy)
              if with_viewer else None)
      try:
        loop.train_and_evaluate(config, workdir, progress=False,
                                live=live)
      finally:
        if live is not None:
          live.client.stopped = True
          frames.append(live.client.frames)
          live.close()
      records = [r for r in metrics_log.read_metrics(
          os.path.join(workdir, rundir.METRICS_FILE))
                 if r.get('split') == 'train']
      rate = records[-1]['step'] / records[-1]['elapsed_s']
      rates[with_viewer].append(rate)
      print(f'{config.name} viewer={"on" if with_viewer else "off"}: '
            f'{rate:.2f} steps/s', flush=True)
  off, on = (sum(rates[k]) / len(rates[k]) for k in (False, True))
  seconds = steps / on * len(rates[True])
  print(f'{config.name}: {off:.2f} steps/s without the viewer, {on:.2f} with '
        f'a client dragging (ratio {on / off:.3f}, {1 - on / off:.1%} slower; '
        f'max_busy {max_busy}; {sum(frames) / seconds:.1f} frames/s served)')


def main():
  parser = argparse.ArgumentParser()
  sub = parser.add_subparsers(dest='what', required=True)
  fps = sub.add_parser('fps')
  fps.add_argument('--ckpt', nargs='+', required=True)
  fps.add_argument('--resolution', type=int, default=256)
  fps.add_argument('--frames', type=int, default=12)
  fps.add_argument('--chunk', type=int, default=4096)
  training = sub.add_parser('training')
  training.add_argument('--config', required=True)
  training.add_argument('--config_args', nargs='*', default=[])
  training.add_argument('--steps', type=int, default=200)
  training.add_argument('--repeats', type=int, default=2)
  training.add_argument('--max_busy', type=float, default=0.25)
  training.add_argument('--resolution', type=int, default=256)
  args = parser.parse_args()
  if args.what == 'fps':
    for ckpt in args.ckpt:
      measure_fps(ckpt, args.resolution, args.frames, args.chunk)
  else:
    measure_training(args.config, args.config_args, args.steps,
                     args.repeats, args.max_busy, args.resolution)


if __name__ == '__main__':
  main()
