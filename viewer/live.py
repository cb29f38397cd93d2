"""Live training view: the trainer hands a render callback; the browser shows the model from
its own camera while training runs, with a pause button and the training curves.

    from viewer.live import TrainingViewer

    def render_fn(camera: calib.Camera, cam_from_world: calib.Rigid3) -> np.ndarray:  # [H, W, 3] uint8
        ...

    viewer = TrainingViewer(render_fn, host="127.0.0.1", port=8080)
    for step in range(steps):
        while viewer.paused:            # the user pressed "Pause training"
            time.sleep(0.1)
        loss = train_step()
        viewer.log(step, {"loss": loss, "psnr": psnr})
    viewer.close()

A background thread renders, for every connected browser, the view of its camera (a PINHOLE
``calib.Camera`` of the canvas aspect, at most ``max_resolution`` pixels on its longest side, and
``cam_from_world`` in OpenCV axes) whenever the camera moved, or the model changed (a ``log`` call)
and ``model_refresh_s`` passed; at most ``max_fps`` renders per second per browser. The image is
shown as the scene background. ``render_fn`` runs in that thread while holding ``viewer.lock``:
a trainer that must not be read mid-update can hold the same lock around its optimizer step.
A ``render_fn`` that raises is reported in the GUI and does not stop the training.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from calib import Camera, Rigid3
from viewer.convert import as_rgb8, render_camera_for_view

__all__ = ["RenderFn", "TrainingViewer"]

RenderFn = Callable[[Camera, Rigid3], np.ndarray]
_HISTORY = 20_000  # most points kept per training curve (older ones are thinned 2x)


class TrainingViewer:
    """A viser server that shows a model being trained (see the module docstring).

    Args:
        render_fn: ``render_fn(camera, cam_from_world) -> [H, W, 3] uint8`` (float in [0, 1]
            accepted), OpenCV camera axes, pixel (0, 0) at the centre of the top-left pixel.
        host, port: bind address (127.0.0.1 by default) and first port tried (the next free
            one is used when it is taken, and announced).
        content: optional :class:`viewer.content.SceneContent` (e.g. the training cameras) drawn
            over the render.
        max_fps: renders per second per browser, at most.
        max_resolution: longest side of the rendered image in pixels.
        model_refresh_s: re-render an unmoved view after the model changed at most this often.
        start_paused: start with training paused (the trainer waits until "Resume").
    """

    def __init__(self, render_fn: RenderFn, *, host: str = "127.0.0.1", port: int = 8080,
                 content=None, max_fps: float = 10.0, max_resolution: int = 512,
                 model_refresh_s: float = 1.0, start_paused: bool = False, verbose: bool = True):
        if not callable(render_fn):
            raise TypeError(f"render_fn: expected a callable (camera, cam_from_world) -> image, "
                            f"got {type(render_fn).__name__}")
        if not max_fps > 0:
            raise ValueError(f"max_fps: expected > 0, got {max_fps}")
        self.render_fn = render_fn
        self.max_fps = float(max_fps)
        self.model_refresh_s = float(model_refresh_s)
        self.lock = threading.RLock()  # held while render_fn runs
        self.render_count = 0
        self.last_render_error: str | None = None
        self.last_step: int | None = None
        self._paused = bool(start_paused)
        self._model_version = 0
        self._stop = threading.Event()
        self._state_lock = threading.Lock()
        self._history: dict[str, tuple[list[float], list[float]]] = {}
        self._plots: dict = {}
        self._last_plot_update = 0.0
        self._plots_dirty = False
        self._client_state: dict[int, tuple] = {}  # client id -> (view key, model version, time)
        self._verbose = verbose

        if content is not None:
            from viewer.app import SceneViewer, ViewerOptions

            self._scene = SceneViewer(content, ViewerOptions(host=host, port=port, verbose=verbose))
            self.server = self._scene.server
        else:
            from viewer.app import start_server

            self._scene = None
            self.server = start_server(host, port, verbose=verbose)
            self.server.gui.configure_theme(control_width="medium", show_share_button=False)
        self._host = host
        self._build_gui(max_resolution)
        self._thread = threading.Thread(target=self._render_loop, daemon=True, name="recon-live-render")
        self._thread.start()
        if verbose:
            print(f"recon: live training view at {self.url}", flush=True)

    # ---- public -----------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.server.get_port()

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host
        return f"http://{shown}:{self.port}"

    @property
    def paused(self) -> bool:
        """True while the user has paused training (the trainer should wait)."""
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self._paused = bool(value)
        self._sync_pause_button()

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Record training metrics at ``step`` (curves update at most twice a second) and mark the
        model as changed (views re-render within ``model_refresh_s``)."""
        step = int(step)
        with self._state_lock:
            self.last_step = step
            self._model_version += 1
            for k, v in metrics.items():
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    raise TypeError(f"metrics[{k!r}]: expected a number, got {type(v).__name__}") from None
                xs, ys = self._history.setdefault(str(k), ([], []))
                xs.append(float(step))
                ys.append(v)
                if len(xs) > _HISTORY:  # thin the older half to keep the curve light
                    half = len(xs) // 2
                    xs[:half], ys[:half] = xs[:half:2], ys[:half:2]
        self._plots_dirty = True
        now = time.monotonic()
        if now - self._last_plot_update > 0.5:
            self._update_plots()

    def wait_while_paused(self, poll: float = 0.1) -> None:
        """Block while paused (or until :meth:`close`)."""
        while self._paused and not self._stop.is_set():
            time.sleep(poll)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=10)
        if self._scene is not None:
            self._scene.close()
        else:
            self.server.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- GUI --------------------------------------------------------------------------
    def _build_gui(self, max_resolution: int):
        gui = self.server.gui
        with gui.add_folder("Training", order=-100):
            self.gui_status = gui.add_markdown("waiting for the first step")
            self.gui_pause = gui.add_button("Pause training", color="orange")
            self.gui_live = gui.add_checkbox("Live render", True)
            self.gui_resolution = gui.add_slider("Render resolution", min=64, max=2048, step=32,
                                                 initial_value=int(max_resolution))
            self.gui_render_info = gui.add_markdown("")
            self._plot_folder = gui.add_folder("Curves")
        self._sync_pause_button()
        self.gui_pause.on_click(lambda _: setattr(self, "paused", not self._paused))
        self.gui_live.on_update(lambda _: self._on_live_toggle())

    def _sync_pause_button(self):
        b = getattr(self, "gui_pause", None)
        if b is not None:
            b.label = "Resume training" if self._paused else "Pause training"
            b.color = "green" if self._paused else "orange"

    def _on_live_toggle(self):
        if not self.gui_live.value:
            for client in self.server.get_clients().values():
                client.scene.set_background_image(None)
        self._client_state.clear()

    def _update_plots(self):
        from viser import uplot

        self._last_plot_update = time.monotonic()
        self._plots_dirty = False
        with self._state_lock:
            hist = {k: (np.array(x), np.array(y)) for k, (x, y) in self._history.items()}
            step = self.last_step
        last = ", ".join(f"{k} {y[-1]:.4g}" for k, (_, y) in hist.items())
        self.gui_status.content = f"step **{step}**" + ("  (paused)" if self._paused else "") + \
            (f"  \n{last}" if last else "")
        for k, (x, y) in hist.items():
            if k not in self._plots:
                with self._plot_folder:
                    self._plots[k] = self.server.gui.add_uplot(
                        data=(x, y), series=(uplot.Series(label="step"),
                                             uplot.Series(label=k, stroke="#1f77b4", width=2)),
                        title=k, aspect=2.0,
                        scales={"x": uplot.Scale(time=False, auto=True), "y": uplot.Scale(auto=True)})
            else:
                self._plots[k].data = (x, y)

    # ---- rendering --------------------------------------------------------------------
    def _render_loop(self):
        period = 1.0 / self.max_fps
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                if self.gui_live.value:
                    for client in list(self.server.get_clients().values()):
                        if self._stop.is_set():
                            break
                        self._maybe_render(client)
                if self._plots_dirty and time.monotonic() - self._last_plot_update > 0.5:
                    self._update_plots()  # the last logged values, even when training stopped
            except Exception as e:  # noqa: BLE001 - the render loop must outlive a failed render (shown in the GUI)
                self.last_render_error = f"{type(e).__name__}: {e}"
            self._stop.wait(max(0.0, period - (time.monotonic() - t0)))

    def _maybe_render(self, client) -> None:
        cam = client.camera
        try:
            view = (float(cam.fov), int(cam.image_width), int(cam.image_height),
                    tuple(np.round(cam.wxyz, 6)), tuple(np.round(cam.position, 6)),
                    int(self.gui_resolution.value))
        except AssertionError:  # the browser has not reported its camera yet
            return
        if view[1] <= 0 or view[2] <= 0:
            return
        now = time.monotonic()
        prev = self._client_state.get(client.client_id)
        version = self._model_version
        if prev is not None:
            moved = prev[0] != view
            model_changed = prev[1] != version and now - prev[2] >= self.model_refresh_s
            if not moved and not model_changed:
                return
        camera, cam_from_world = render_camera_for_view(view[0], view[1], view[2], cam.wxyz, cam.position,
                                                        max_side=view[5])
        t = time.perf_counter()
        try:
            with self.lock:
                img = as_rgb8(self.render_fn(camera, cam_from_world), camera)
        except Exception as e:  # noqa: BLE001 - shown in the GUI; the viewer keeps running
            msg = f"{type(e).__name__}: {e}"
            if msg != self.last_render_error:
                self.gui_render_info.content = f"render failed: `{msg}`"
            self.last_render_error = msg
            self._client_state[client.client_id] = (view, version, now)
            return
        dt = time.perf_counter() - t
        client.scene.set_background_image(img, format="jpeg", jpeg_quality=90)
        self._client_state[client.client_id] = (view, version, now)
        self.render_count += 1
        self.gui_render_info.content = f"render {camera.width}x{camera.height} in {dt * 1000:.0f} ms"
