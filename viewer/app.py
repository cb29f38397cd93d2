"""The scene viewer: a viser server showing a :class:`~viewer.content.SceneContent`.

    from viewer.app import SceneViewer
    v = SceneViewer(content, host="127.0.0.1", port=8080)
    print(v.url)
    v.wait()          # until Ctrl-C (or wait(timeout=...))
    v.close()

GUI: Info (what was loaded, real and shown counts), Visibility (points, cameras, splats, mesh,
grid, axes), Points (colour mode, point size, point budget), Labels (legend with per-class
toggles, the clicked point's class/instance, select / export the object), Selected camera
(the photo of the clicked frustum), Capture (screenshot PNG, camera path keyframes -> JSON).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calib import Rigid3
from viewer.camera_path import CameraPath, PathFrame, interpolate_path, save_camera_path
from viewer.content import SceneContent
from viewer.convert import (
    cam_from_world_from_viser_pose,
    colormap,
    label_palette,
    pick_point,
    pinhole_from_fov,
    subsample_order,
    vertical_fov,
    viser_pose_from_cam_from_world,
)

_log = logging.getLogger(__name__)

__all__ = ["COLOR_MODES", "SceneViewer", "ViewerOptions", "start_server"]

COLOR_MODES = ("RGB", "Reprojection error", "Track length", "Class", "Instance", "Height")
_THUMB_MAX = 256  # px, longest side of a frustum thumbnail


@dataclass
class ViewerOptions:
    """Options of :class:`SceneViewer`."""

    host: str = "127.0.0.1"  # bind address; 0.0.0.0 exposes the viewer to the network
    port: int = 8080  # first port tried; the next free one is used when it is taken
    point_budget: int = 1_000_000  # most points sent to the browser (random, deterministic subset)
    preview_points: int = 100_000  # larger clouds go to the first browser as this preview first
    point_size: float | None = None  # world units; None: from the scene's extent and point count
    path_height: int = 720  # image height of recorded camera-path frames (width from the aspect)
    output_dir: Path = field(default_factory=lambda: Path("recon-view"))  # screenshots, paths, exports
    load_thumbnails: bool = True  # read the photos behind frustums (in a background thread)
    verbose: bool = True  # print the URL and what was saved


def start_server(host: str, port: int, *, verbose: bool = True):
    """Start a viser server on ``host``, trying ``port`` then the next ports; returns the server.
    Prints which port was used when the requested one was taken."""
    import contextlib
    import io
    import logging

    import viser

    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    with contextlib.redirect_stdout(io.StringIO()):  # viser prints its own URL box; we print ours
        server = viser.ViserServer(host=host, port=port, verbose=False)
    got = server.get_port()
    if port != 0 and got != port and verbose:
        print(f"recon view: port {port} is in use; using port {got} instead", flush=True)
    return server


def _scene_frame(content: SceneContent):
    """(centre [3], extent (float), up [3] or None): robust centre/extent of the content and the
    up direction implied by the cameras (the mean of their -y axes: photos are mostly upright)."""
    pts = content.scene_points(include_cameras=False)
    cams = np.array([v.cam_from_world.dst_origin_in_src() for v in content.cameras]).reshape(-1, 3)
    if pts.shape[0] or cams.shape[0]:
        # Percentiles drop stray points; every camera centre counts (there are few, all real).
        lo_parts, hi_parts = [cams], [cams]
        if pts.shape[0]:
            lo_parts.append(np.percentile(pts, 2, axis=0)[None])
            hi_parts.append(np.percentile(pts, 98, axis=0)[None])
        lo, hi = np.vstack(lo_parts).min(axis=0), np.vstack(hi_parts).max(axis=0)
        centre = (lo + hi) / 2
        extent = float(np.linalg.norm(hi - lo)) or 1.0
    else:
        centre, extent = np.zeros(3), 1.0
    up = None
    if content.cameras:
        ys = np.array([v.cam_from_world.rotation[1] for v in content.cameras])  # camera y in world
        m = -ys.mean(axis=0)
        if np.linalg.norm(m) > 0.3:
            up = m / np.linalg.norm(m)
    return centre.astype(np.float64), extent, up


def _thumbnail(path: Path, max_side: int = _THUMB_MAX) -> np.ndarray | None:
    from PIL import ImageOps

    from recon.errors import FormatError
    from recon.io.images import open_image

    try:
        with open_image(path) as im:
            im.draft("RGB", (max_side, max_side))  # JPEG: decode at reduced size (fast)
            im = ImageOps.exif_transpose(im).convert("RGB")
            im.thumbnail((max_side, max_side))
            return np.asarray(im)
    except (OSError, FormatError):
        return None


class SceneViewer:
    """Serve ``content`` with viser. Thread-safe enough for the GUI callbacks; stop with
    :meth:`close` (also on context-manager exit)."""

    def __init__(self, content: SceneContent, options: ViewerOptions | None = None, **kwargs):
        if not isinstance(content, SceneContent):
            raise TypeError(f"content: expected viewer.content.SceneContent, got {type(content).__name__}")
        if options is not None and kwargs:
            raise TypeError(f"SceneViewer: pass options=ViewerOptions(...) or keyword options, not both "
                            f"(got {sorted(kwargs)})")
        self.options = options or ViewerOptions(**kwargs)
        self.content = content
        self._lock = threading.RLock()
        self._closed = False
        self.keyframes: list[PathFrame] = []
        self.selected_point: int = -1
        self.selected_instance: int | None = None
        self.timings: dict[str, float] = {}

        t0 = time.perf_counter()
        self.server = start_server(self.options.host, self.options.port, verbose=self.options.verbose)
        try:
            self._build_scene()
        except BaseException:  # Ctrl-C or a bad input while building: do not leave a server behind
            self._closed = True
            self.server.stop()
            raise
        self.timings["server_load_s"] = time.perf_counter() - t0
        self._thumb_thread = None
        if self.options.load_thumbnails and any(c.image_path for c in content.cameras):
            self._thumb_thread = threading.Thread(target=self._load_thumbnails, daemon=True,
                                                  name="recon-view-thumbnails")
            self._thumb_thread.start()

    def _build_scene(self) -> None:
        content = self.content
        self.server.gui.configure_theme(control_width="medium", dark_mode=False, show_share_button=False)
        self.centre, self.extent, self.up = _scene_frame(content)
        if self.up is not None:
            self.server.scene.set_up_direction(self.up)
        pts = content.points
        self._order = subsample_order(len(pts)) if pts is not None else None
        self._class_visible: dict[int, bool] = {}
        self._colour_cache: dict[str, np.ndarray] = {}
        self._point_handle = None
        self._frustums = []

        self._build_gui()
        self._add_static()
        self._set_initial_camera()
        self._full_pending = False
        if pts is not None:
            if len(pts) > self.options.preview_points and self.gui_budget.value > self.options.preview_points:
                # Time to first display: a uniform preview first (the prefix of the same random
                # order), the full budget once the first browser has it on screen.
                self._update_points(preview=True)
                self._full_pending = True
                self.server.on_client_connect(self._send_full_cloud)
            else:
                self._update_points()
        self._add_splats()
        self._add_mesh()
        self._add_cameras()
        self.server.scene.on_click()(self._on_scene_click)

    # ---- lifecycle --------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.server.get_port()

    @property
    def url(self) -> str:
        host = self.options.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{self.port}"

    def wait(self, timeout: float | None = None) -> None:
        """Block until Ctrl-C (KeyboardInterrupt is swallowed) or ``timeout`` seconds."""
        end = None if timeout is None else time.monotonic() + timeout
        try:
            while not self._closed and (end is None or time.monotonic() < end):
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.server.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def wait_for_client(self, timeout: float = 30.0):
        """The first connected client whose camera has reported, or None after ``timeout`` s."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for client in self.server.get_clients().values():
                try:
                    _ = client.camera.fov  # raises AssertionError until the camera has reported
                    return client
                except AssertionError:
                    pass
            time.sleep(0.1)
        return None

    # ---- static content ---------------------------------------------------------------
    def _add_static(self):
        s = self.server.scene
        axes_len = 0.1 * self.extent
        self._axes = s.add_frame("/world_axes", axes_length=axes_len, axes_radius=axes_len * 0.03)
        s.world_axes.visible = False  # ours is scaled to the scene
        # Ground grid: perpendicular to "up", below the content.
        up = self.up if self.up is not None else np.array([0.0, 0.0, 1.0])
        pts = self.content.scene_points()
        h = float(np.percentile(pts @ up, 1)) if pts.shape[0] else 0.0
        base = self.centre - (self.centre @ up - h) * up
        rot = _rotation_from_z(up)  # grid lies in its local xy plane
        cell = 10 ** np.floor(np.log10(max(self.extent / 10, 1e-6)))
        self._grid = s.add_grid("/ground_grid", width=cell * 40, height=cell * 40, plane="xy",
                                cell_size=cell, section_size=cell * 10,
                                wxyz=Rigid3(rot, np.zeros(3)).quat_wxyz, position=base)

    def _set_initial_camera(self):
        """An overview: from above and outside the content, on the side of the first camera,
        looking at the centre (what is where, cameras included, at a glance)."""
        ic = self.server.initial_camera
        up = self.up if self.up is not None else np.array([0.0, 0.0, 1.0])
        if self.content.cameras:
            side = self.content.cameras[0].cam_from_world.dst_origin_in_src() - self.centre
        else:
            side = np.array([1.0, -1.0, 0.0])
        side = side - (side @ up) * up
        side = side / np.linalg.norm(side) if np.linalg.norm(side) > 1e-9 else _rotation_from_z(up)[:, 0]
        ic.position = self.centre + self.extent * (0.9 * side + 0.65 * up)
        ic.look_at = self.centre
        ic.fov = np.deg2rad(55.0)
        ic.near = max(self.extent * 1e-4, 1e-4)
        ic.far = self.extent * 100

    def _add_cameras(self):
        scale = 0.04 * self.extent
        for i, v in enumerate(self.content.cameras):
            pose = viser_pose_from_cam_from_world(v.cam_from_world)
            h = self.server.scene.add_camera_frustum(
                f"/cameras/{i:05d}", fov=vertical_fov(v.camera), aspect=v.camera.width / v.camera.height,
                scale=scale, thickness=scale * 0.03, color=(230, 80, 30), wxyz=pose.wxyz,
                position=pose.position, visible=self.gui_show_cameras.value)
            h.on_click(lambda event, i=i: self._on_frustum_click(event.client, i))
            self._frustums.append(h)

    def _load_thumbnails(self):
        for i, v in enumerate(self.content.cameras):
            if self._closed:
                return
            if v.image_path is not None:
                img = _thumbnail(v.image_path)
                if img is not None and not self._closed:
                    self._frustums[i].image = img

    def _add_splats(self):
        sp = self.content.splats
        self._splat_handle = None
        if sp is None or not len(sp):
            return
        self._splat_handle = self.server.scene.add_gaussian_splats(
            "/splats", centers=sp.centers, covariances=sp.covariances, rgbs=sp.rgb,
            opacities=sp.opacity.reshape(-1, 1))

    def _add_mesh(self):
        self._mesh_handle = None
        if self.content.mesh is not None:
            self._mesh_handle = self.server.scene.add_mesh_trimesh("/mesh", self.content.mesh)

    # ---- GUI --------------------------------------------------------------------------
    def _build_gui(self):
        gui = self.server.gui
        c = self.content
        with gui.add_folder("Info"):
            lines = [f"**{c.title}**"] + ([f"`{c.source}`"] if c.source else []) + c.notes
            if c.points is not None:
                lines.append(f"points: {len(c.points):,}")
            if c.splats is not None:
                lines.append(f"splats: {len(c.splats):,}")
            if c.mesh is not None:
                lines.append(f"mesh: {len(c.mesh.vertices):,} vertices, {len(c.mesh.faces):,} faces")
            if c.cameras:
                lines.append(f"cameras: {len(c.cameras)}")
            self.gui_info = gui.add_markdown("  \n".join(lines))
            self.gui_shown = gui.add_markdown("")
        with gui.add_folder("Visibility"):
            self.gui_show_points = gui.add_checkbox("Points", c.points is not None)
            self.gui_show_cameras = gui.add_checkbox("Cameras", bool(c.cameras))
            self.gui_show_splats = gui.add_checkbox("Splats", c.splats is not None)
            self.gui_show_mesh = gui.add_checkbox("Mesh", c.mesh is not None)
            self.gui_show_grid = gui.add_checkbox("Ground grid", True)
            self.gui_show_axes = gui.add_checkbox("World axes", True)
        self.gui_show_points.on_update(lambda _: self._set_visible(self._point_handle, self.gui_show_points.value))
        self.gui_show_cameras.on_update(lambda _: [self._set_visible(h, self.gui_show_cameras.value)
                                                   for h in self._frustums])
        self.gui_show_splats.on_update(lambda _: self._set_visible(self._splat_handle, self.gui_show_splats.value))
        self.gui_show_mesh.on_update(lambda _: self._set_visible(self._mesh_handle, self.gui_show_mesh.value))
        self.gui_show_grid.on_update(lambda _: self._set_visible(self._grid, self.gui_show_grid.value))
        self.gui_show_axes.on_update(lambda _: self._set_visible(self._axes, self.gui_show_axes.value))

        pts = c.points
        if pts is not None:
            modes = [m for m in COLOR_MODES if self._mode_available(m)]
            default_mode = "Class" if pts.class_id is not None else modes[0]
            n = len(pts)
            # A fraction of the mean spacing of n points spread over a surface of this extent.
            size = self.options.point_size or float(np.clip(self.extent / max(np.sqrt(n), 1) * 0.12,
                                                            self.extent * 2e-4, self.extent * 0.004))
            with gui.add_folder("Points"):
                self.gui_color_mode = gui.add_dropdown("Colour by", tuple(modes), initial_value=default_mode)
                self.gui_point_size = gui.add_slider("Point size", min=size / 10, max=size * 10,
                                                     step=size / 10, initial_value=size)
                self.gui_budget = gui.add_number("Point budget", initial_value=min(self.options.point_budget, n),
                                                 min=1, max=max(n, 1), step=1)
            self.gui_color_mode.on_update(lambda _: self._update_points())
            self.gui_point_size.on_update(lambda _: self._set_point_size())
            self.gui_budget.on_update(lambda _: self._update_points())
            if pts.has_labels:
                self._build_label_gui()
            with gui.add_folder("Clicked point"):
                self.gui_point_info = gui.add_markdown("Click a point in the scene.")
        elif c.splats is not None:
            with gui.add_folder("Clicked splat"):
                self.gui_point_info = gui.add_markdown("Click a splat in the scene.")

        with gui.add_folder("Selected camera", expand_by_default=False):
            self.gui_cam_info = gui.add_markdown("Click a camera frustum to fly to it.")
            self.gui_cam_image = gui.add_image(np.full((9, 16, 3), 235, np.uint8), label=None)

        with gui.add_folder("Capture"):
            self.gui_screenshot = gui.add_button("Screenshot (PNG)")
            self.gui_add_key = gui.add_button("Add camera keyframe")
            self.gui_clear_keys = gui.add_button("Clear keyframes")
            self.gui_path_height = gui.add_number("Path height (px)", initial_value=self.options.path_height,
                                                  min=16, max=8192, step=1)
            self.gui_seconds = gui.add_number("Seconds per segment", initial_value=2.0, min=0.1, max=60.0, step=0.1)
            self.gui_save_path = gui.add_button("Save camera path (JSON)")
            self.gui_keys_info = gui.add_markdown("0 keyframes")
        self.gui_screenshot.on_click(lambda e: self.screenshot(client=e.client))
        self.gui_add_key.on_click(lambda e: self.add_keyframe(e.client))
        self.gui_clear_keys.on_click(lambda _: self.clear_keyframes())
        self.gui_save_path.on_click(lambda e: self.save_camera_path(client=e.client))

    def _build_label_gui(self):
        gui = self.server.gui
        pts = self.content.points
        ids = pts.class_id if pts.class_id is not None else np.full(len(pts), -1)
        classes, counts = np.unique(ids, return_counts=True)
        colours = label_palette(classes)
        self._class_boxes = {}
        with gui.add_folder("Labels"):
            rows = []
            for cid, n, rgb in zip(classes, counts, colours):
                name = self._class_name(int(cid))
                sw = "#" + "".join(f"{int(x):02x}" for x in rgb)
                rows.append(f'<div><span style="display:inline-block;width:12px;height:12px;'
                            f'background:{sw};margin-right:6px"></span>{name} ({n:,})</div>')
            self.gui_legend = gui.add_html("".join(rows))
            for cid in classes:
                cid = int(cid)
                self._class_visible[cid] = True
                box = gui.add_checkbox(f"show {self._class_name(cid)}", True)
                box.on_update(lambda _, cid=cid, box=box: self.set_class_visible(cid, box.value))
                self._class_boxes[cid] = box
            self.gui_select = gui.add_button("Select this object", disabled=True)
            self.gui_export = gui.add_button("Export selected object (PLY)", disabled=True)
            self.gui_clear_sel = gui.add_button("Clear selection", disabled=True)
        self.gui_select.on_click(lambda _: self.select_instance_of(self.selected_point))
        self.gui_export.on_click(lambda e: self.export_selected(client=e.client))
        self.gui_clear_sel.on_click(lambda _: self.select_instance_of(-1))

    def _class_name(self, cid: int) -> str:
        if cid < 0:
            return "unlabelled"
        return self.content.class_names.get(cid, f"class {cid}")

    @staticmethod
    def _set_visible(handle, visible: bool):
        if handle is not None:
            handle.visible = bool(visible)

    def _mode_available(self, mode: str) -> bool:
        p = self.content.points
        return {"RGB": True, "Height": True,
                "Reprojection error": p.error is not None and bool(np.any(p.error >= 0)),
                "Track length": p.track_length is not None and bool(np.any(p.track_length > 0)),
                "Class": p.class_id is not None, "Instance": p.instance_id is not None}[mode]

    # ---- points -----------------------------------------------------------------------
    def point_colours(self, mode: str) -> np.ndarray:
        """[N, 3] uint8 colours of all points for a colour mode (cached)."""
        if mode in self._colour_cache:
            return self._colour_cache[mode]
        p = self.content.points
        if mode == "RGB":
            col = p.rgb if p.rgb is not None else colormap(p.xyz @ self._up_vec(), name="viridis")
        elif mode == "Reprojection error":
            col = colormap(p.error, name="turbo", lo=0.0)
        elif mode == "Track length":
            col = colormap(p.track_length.astype(np.float64), name="viridis", lo=2.0)
        elif mode == "Class":
            col = label_palette(p.class_id)
        elif mode == "Instance":
            col = label_palette(p.instance_id)
        elif mode == "Height":
            col = colormap(p.xyz @ self._up_vec(), name="viridis")
        else:
            raise ValueError(f"mode: expected one of {COLOR_MODES}, got {mode!r}")
        self._colour_cache[mode] = col
        return col

    def _up_vec(self) -> np.ndarray:
        return (self.up if self.up is not None else np.array([0.0, 0.0, 1.0])).astype(np.float32)

    def visible_indices(self) -> np.ndarray:
        """Indices of the points sent to the browser: class filter, then the budget (a prefix of
        a fixed random permutation, so results are deterministic)."""
        p = self.content.points
        order = self._order
        if p.class_id is not None and not all(self._class_visible.values()):
            hidden = [c for c, on in self._class_visible.items() if not on]
            order = order[~np.isin(p.class_id[order], hidden)]
        budget = int(self.gui_budget.value)
        return order[:budget]

    def _send_full_cloud(self, client) -> None:
        try:  # a (tiny) render from the browser proves that the preview is on its screen
            client.get_render(height=24, width=32, timeout=60)
        except Exception as e:  # noqa: BLE001 - a browser round trip must never kill the server (logged)
            _log.debug("preview render request failed: %s", e)
        if self._full_pending:
            self._update_points()

    def _update_points(self, preview: bool = False):
        with self._lock:
            if self._closed:
                return
            self._full_pending = False
            p = self.content.points
            idx = self.visible_indices()
            if preview:
                idx = idx[: self.options.preview_points]
            col = self.point_colours(self.gui_color_mode.value)[idx]
            if self.selected_instance is not None and p.instance_id is not None:
                sel = p.instance_id[idx] == self.selected_instance
                col = col.copy()
                col[~sel] = (col[~sel] * 0.25 + 40).astype(np.uint8)
                col[sel] = (255, 230, 0)
            self._shown_idx = idx
            self._point_handle = self.server.scene.add_point_cloud(
                "/points", points=p.xyz[idx], colors=col, point_size=float(self.gui_point_size.value),
                point_shape="rounded", precision="float32", point_shading="flat",
                visible=self.gui_show_points.value)
            self.gui_shown.content = f"points shown: {idx.size:,} of {len(p):,}" + \
                (" (preview; the rest follows)" if preview else "")

    def _set_point_size(self):
        if self._point_handle is not None:
            self._point_handle.point_size = float(self.gui_point_size.value)

    def set_class_visible(self, class_id: int, visible: bool) -> None:
        self._class_visible[int(class_id)] = bool(visible)
        box = getattr(self, "_class_boxes", {}).get(int(class_id))
        if box is not None and box.value != bool(visible):
            box.value = bool(visible)  # keeps the GUI in sync when called from Python
        self._update_points()

    # ---- picking ----------------------------------------------------------------------
    def _on_scene_click(self, event):
        if self.content.points is None and self.content.splats is None:
            return
        fov = 0.9
        h = 800
        try:
            fov, h = event.client.camera.fov, event.client.camera.image_height
        except AssertionError:
            pass
        max_angle = 8.0 * fov / max(h, 1)  # about 8 pixels
        if self.content.points is not None:
            self.pick(event.ray_origin, event.ray_direction, max_angle=max_angle)
        else:
            self.pick_splat(event.ray_origin, event.ray_direction, max_angle=max_angle)

    def pick_splat(self, ray_origin, ray_direction, *, max_angle: float = 0.01) -> int:
        """Select the splat whose centre is nearest the ray (front-most within ``max_angle``);
        shows its centre, colour, opacity and size. Returns its index or -1."""
        sp = self.content.splats
        i = pick_point(sp.centers, ray_origin, ray_direction, max_angle=max_angle)
        self.selected_point = i
        if i < 0:
            self.gui_point_info.content = "No splat centre under the cursor."
        else:
            sigma = np.sqrt(np.clip(np.linalg.eigvalsh(sp.covariances[i].astype(np.float64)), 0, None))
            self.gui_point_info.content = "  \n".join([
                f"splat {i}: centre = {np.round(sp.centers[i], 4).tolist()}",
                f"rgb (DC) = {np.round(sp.rgb[i] * 255).astype(int).tolist()}",
                f"opacity = {sp.opacity[i]:.3f}",
                f"std. dev. = {np.round(sigma[::-1], 4).tolist()} (world units)"])
        return i

    def pick(self, ray_origin, ray_direction, *, max_angle: float = 0.01) -> int:
        """Select the shown point nearest the ray; updates the 'Clicked point' panel. Returns
        its index into ``content.points`` or -1."""
        p = self.content.points
        i = pick_point(p.xyz, ray_origin, ray_direction, max_angle=max_angle, candidates=self._shown_idx)
        self.selected_point = i
        if i < 0:
            self.gui_point_info.content = "No point under the cursor."
        else:
            lines = [f"point {i}: xyz = {np.round(p.xyz[i], 4).tolist()}"]
            if p.rgb is not None:
                lines.append(f"rgb = {p.rgb[i].tolist()}")
            if p.error is not None and p.error[i] >= 0:
                lines.append(f"reprojection error = {p.error[i]:.3f} px")
            if p.track_length is not None:
                lines.append(f"track length = {int(p.track_length[i])}")
            if p.class_id is not None:
                lines.append(f"class = {self._class_name(int(p.class_id[i]))} (id {int(p.class_id[i])})")
            if p.instance_id is not None:
                lines.append(f"instance = {int(p.instance_id[i])}")
            self.gui_point_info.content = "  \n".join(lines)
        if p.has_labels:
            self.gui_select.disabled = i < 0 or p.instance_id is None
        return i

    def select_instance_of(self, point_index: int) -> int | None:
        """Highlight the instance of point ``point_index`` (-1 clears). Returns the instance id."""
        p = self.content.points
        if point_index < 0 or p.instance_id is None:
            self.selected_instance = None
        else:
            self.selected_instance = int(p.instance_id[point_index])
        if p.has_labels:
            self.gui_export.disabled = self.selected_instance is None
            self.gui_clear_sel.disabled = self.selected_instance is None
        self._update_points()
        return self.selected_instance

    def export_selected(self, path: str | Path | None = None, *, client=None) -> Path | None:
        """Write the points of the selected instance (all of them, not only the shown subset) to
        a PLY with rgb, class_id and instance_id; returns the path."""
        from recon.io import PointCloud, write_ply

        p = self.content.points
        if self.selected_instance is None:
            return None
        m = p.instance_id == self.selected_instance
        attrs = {"instance_id": p.instance_id[m].astype(np.int32)}
        if p.class_id is not None:
            attrs["class_id"] = p.class_id[m].astype(np.int32)
        cloud = PointCloud(xyz=p.xyz[m].astype(np.float64), rgb=None if p.rgb is None else p.rgb[m],
                           attributes=attrs)
        path = Path(path) if path else self.options.output_dir / f"instance_{self.selected_instance}.ply"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_ply(path, cloud)
        self._announce(f"exported instance {self.selected_instance} ({int(m.sum()):,} points) to {path}",
                       client, path)
        return path

    # ---- cameras ----------------------------------------------------------------------
    def _on_frustum_click(self, client, i: int):
        self.fly_to_camera(client, i)

    def fly_to_camera(self, client, i: int) -> None:
        """Move ``client``'s browser camera onto camera ``i`` and show its photo in the GUI. The
        frustum of camera ``i`` is hidden while the view sits on it (its photo plane would cover
        the scene) and comes back when the view moves away."""
        v = self.content.cameras[i]
        pose = viser_pose_from_cam_from_world(v.cam_from_world)
        self._restore_hidden_frustum()
        self._hidden_frustum = [i, pose.position, False]  # index, where, has the view arrived
        self._frustums[i].visible = False
        if not getattr(client, "_recon_watch", False):
            client._recon_watch = True
            client.camera.on_update(lambda cam: self._on_camera_moved(cam))
        with client.atomic():
            client.camera.fov = vertical_fov(v.camera)
            client.camera.wxyz = pose.wxyz
            client.camera.position = pose.position
        self.gui_cam_info.content = (f"**{v.name}**  \n{v.camera.model} {v.camera.width}x{v.camera.height}  \n"
                                     f"centre {np.round(pose.position, 3).tolist()}")
        if v.image_path is not None:
            img = _thumbnail(v.image_path, 512)
            if img is not None:
                self.gui_cam_image.image = img
        else:
            self.gui_cam_image.image = np.full((9, 16, 3), 235, np.uint8)

    def _restore_hidden_frustum(self):
        hidden = getattr(self, "_hidden_frustum", None)
        if hidden is not None:
            self._hidden_frustum = None
            self._frustums[hidden[0]].visible = bool(self.gui_show_cameras.value)

    def _on_camera_moved(self, camera) -> None:
        hidden = getattr(self, "_hidden_frustum", None)
        if hidden is None:
            return
        away = np.linalg.norm(np.asarray(camera.position) - hidden[1]) > 0.02 * self.extent
        if not away:
            hidden[2] = True
        elif hidden[2]:  # arrived earlier, now moved away: show the frustum again
            self._restore_hidden_frustum()

    # ---- capture ----------------------------------------------------------------------
    def client_view(self, client, *, height: int | None = None):
        """(calib.Camera PINHOLE, cam_from_world) of a client's current browser view, at the
        size of its render buffer (which viser shrinks when the browser renders slowly), or at
        ``height`` pixels with the view's aspect."""
        cam = client.camera
        w, h = cam.image_width, cam.image_height
        if height is not None:
            w, h = max(1, round(int(height) * w / h)), int(height)
        return pinhole_from_fov(cam.fov, w, h), cam_from_world_from_viser_pose(cam.wxyz, cam.position)

    def screenshot(self, path: str | Path | None = None, *, client=None, timeout: float = 20.0) -> Path:
        """Save a PNG of what ``client`` (default: the first one) sees, at its canvas size."""
        from PIL import Image

        client = client or self.wait_for_client(timeout)
        if client is None:
            raise RuntimeError("screenshot: no browser is connected to the viewer")
        w, h = client.camera.image_width, client.camera.image_height
        img = client.get_render(height=h, width=w, transport_format="png", timeout=timeout)
        path = Path(path) if path else self.options.output_dir / time.strftime("screenshot_%Y%m%d_%H%M%S.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
        self._announce(f"saved screenshot {path} ({w}x{h})", client, path)
        return path

    def add_keyframe(self, client) -> PathFrame:
        """Record ``client``'s current view as the next camera-path keyframe (PINHOLE, the
        view's aspect and vertical fov, 'Path height' pixels tall)."""
        camera, cam_from_world = self.client_view(client, height=int(self.gui_path_height.value))
        kf = PathFrame(camera, cam_from_world, 0.0)
        with self._lock:
            self.keyframes.append(kf)
            k = len(self.keyframes)
        pose = viser_pose_from_cam_from_world(cam_from_world)
        self.server.scene.add_camera_frustum(
            f"/camera_path/{k:03d}", fov=vertical_fov(camera), aspect=camera.width / camera.height,
            scale=0.03 * self.extent, thickness=0.001 * self.extent, color=(30, 120, 230),
            wxyz=pose.wxyz, position=pose.position)
        self.gui_keys_info.content = f"{k} keyframe(s)"
        return kf

    def clear_keyframes(self) -> None:
        with self._lock:
            self.keyframes.clear()
        self.server.scene.remove_by_name("/camera_path")
        self.gui_keys_info.content = "0 keyframes"

    def camera_path(self, *, fps: float = 30.0) -> CameraPath:
        seconds = float(self.gui_seconds.value)
        return CameraPath(list(self.keyframes), interpolate_path(self.keyframes, fps=fps,
                                                                 seconds_per_segment=seconds), fps)

    def save_camera_path(self, path: str | Path | None = None, *, client=None) -> Path | None:
        """Save the recorded keyframes (and the interpolated frames) as camera-path JSON."""
        if not self.keyframes:
            self._announce("no keyframes recorded yet: press 'Add camera keyframe' first", client)
            return None
        path = Path(path) if path else self.options.output_dir / "camera_path.json"
        save_camera_path(path, self.camera_path())
        self._announce(f"saved camera path ({len(self.keyframes)} keyframes) to {path}; "
                       f"render it with `recon render ... --camera-path {path}`", client, path)
        return path

    def _announce(self, message: str, client=None, path: Path | None = None) -> None:
        if self.options.verbose:
            print(f"recon view: {message}", flush=True)
        if client is not None:
            try:
                client.add_notification("recon view", message, auto_close_seconds=6.0)
                if path is not None and path.stat().st_size < 64 * 1024 * 1024:
                    client.send_file_download(path.name, path.read_bytes())
            except Exception as e:  # noqa: BLE001 - a browser round trip must never kill the server (logged)
                _log.debug("could not notify the browser: %s", e)


def _rotation_from_z(z) -> np.ndarray:
    """A rotation whose third column is the unit vector ``z`` (any consistent x, y)."""
    z = np.asarray(z, dtype=np.float64)
    z = z / np.linalg.norm(z)
    a = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(a, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)
