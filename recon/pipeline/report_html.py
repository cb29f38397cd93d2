"""The self-contained HTML report of ``recon reconstruct`` (pictures inlined as base64 PNG, so the
one file can be mailed or attached to an issue).

Sections: the stage table (ran / resumed / reused, seconds), SfM (cameras and points from above
and from the side, reprojection-error histogram), training (curve when the trainer logged one,
held-out renders next to the photos), export (mesh thumbnail, counts), labels (class colours).
Each picture is drawn only from files the stages wrote; a missing one is left out, not faked.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

__all__ = ["write_report_html"]


def _fig_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _img_tag(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _sfm_pictures(out: Path) -> list[tuple[str, str]]:
    import matplotlib.pyplot as plt

    from recon.io import read_colmap

    model = out / "scene" / "sparse" / "0"
    if not model.is_dir():
        model = out / "sfm" / "sparse" / "0"
    if not model.is_dir():
        return []
    rec = read_colmap(model)
    xyz, rgb = rec.points_xyz(), rec.points_rgb() / 255.0
    centres = np.array([im.center for im in rec.registered_images]).reshape(-1, 3)
    sel = np.random.default_rng(0).permutation(len(xyz))[:20000]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, (i, j, name) in zip(axes, ((0, 1, "top view (x, y)"), (0, 2, "side view (x, z)"))):
        if len(xyz):
            lo, hi = np.percentile(xyz[:, [i, j]], [1, 99], axis=0)
            ax.scatter(xyz[sel, i], xyz[sel, j], s=0.4, c=rgb[sel])
            pad = 0.15 * (hi - lo)
            ax.set_xlim(min(lo[0] - pad[0], centres[:, i].min()), max(hi[0] + pad[0], centres[:, i].max()))
            ax.set_ylim(min(lo[1] - pad[1], centres[:, j].min()), max(hi[1] + pad[1], centres[:, j].max()))
        ax.plot(centres[:, i], centres[:, j], "v", c="tab:red", ms=4, label="cameras")
        ax.set_aspect("equal")
        ax.set_title(name)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"{len(rec.registered_images)}/{len(rec.images)} images registered, {len(xyz)} points")
    fig.tight_layout()
    pics = [("SfM cameras and points", _fig_png(fig))]
    err = rec.points_error()
    err = err[err >= 0]
    if len(err):
        fig, ax = plt.subplots(figsize=(5.5, 3.2))
        ax.hist(err, bins=60, range=(0, float(np.percentile(err, 99.5)) + 1e-9), color="tab:blue")
        ax.set_xlabel("mean reprojection error per point (px)")
        ax.set_ylabel("points")
        ax.set_title(f"reprojection error: mean {err.mean():.3f} px, median {np.median(err):.3f} px")
        fig.tight_layout()
        pics.append(("SfM residuals", _fig_png(fig)))
    return pics


def _training_pictures(out: Path, method: str) -> list[tuple[str, str]]:
    import matplotlib.pyplot as plt

    from recon.io import read_image

    d = out / method
    pics = []
    hist = None
    if (d / "history.json").is_file():
        try:
            hist = json.loads((d / "history.json").read_text())
        except ValueError:
            hist = None
    key = None
    if isinstance(hist, dict) and hist.get("step"):
        key = next((k for k in ("psnr", "loss") if len(hist.get(k, [])) == len(hist["step"])), None)
    if key is not None:
        fig, ax = plt.subplots(figsize=(5.5, 3.2))
        ax.plot(hist["step"], hist[key])
        ax.set_xlabel("step")
        ax.set_ylabel(key + (" (dB, running mean on training views)" if key == "psnr" else ""))
        ax.set_title("training curve")
        fig.tight_layout()
        pics.append(("training curve", _fig_png(fig)))
    renders = sorted((d / "renders" / "test").glob("*.png"))[:4]
    images_dir = out / "scene" / "images"
    rows = []
    for r in renders:
        stem = r.stem.split("_", 1)[-1]
        truth = sorted(images_dir.glob(f"{stem}.*")) if images_dir.is_dir() else []
        rows.append((truth[0] if truth else None, r))
    if rows:
        fig, axes = plt.subplots(len(rows), 2, figsize=(8, 3.2 * len(rows)), squeeze=False)
        for (truth, r), (a0, a1) in zip(rows, axes):
            pred = read_image(r)
            if truth is not None:
                a0.imshow(read_image(truth))
                a0.set_title(f"photo {truth.name} (held out)", fontsize=9)
            a1.imshow(pred)
            a1.set_title(f"{method} render", fontsize=9)
            a0.axis("off")
            a1.axis("off")
        fig.tight_layout()
        pics.append(("held-out views: photo | render", _fig_png(fig)))
    return pics


def _mesh_picture(out: Path) -> list[tuple[str, str]]:
    mesh_path = next((p for p in (out / "export" / "mesh.ply", out / "export" / "mesh.glb") if p.is_file()), None)
    if mesh_path is None:
        return []
    import matplotlib.pyplot as plt
    import trimesh
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    mesh = trimesh.load(mesh_path, force="mesh", process=False)
    if len(mesh.faces) == 0:
        return []
    faces = mesh.faces
    if len(faces) > 30000:
        faces = faces[np.random.default_rng(0).permutation(len(faces))[:30000]]
    v = mesh.vertices
    cols = None
    vc = getattr(mesh.visual, "vertex_colors", None)
    if vc is not None and len(vc) == len(v):
        cols = vc[faces].mean(axis=1)[:, :3] / 255.0
    fig = plt.figure(figsize=(6, 5))
    ax = fig.add_subplot(projection="3d")
    coll = Poly3DCollection(v[faces], facecolors=cols if cols is not None else "lightgray", linewidths=0)
    ax.add_collection3d(coll)
    lo, hi = v.min(0), v.max(0)
    c, r = (lo + hi) / 2, (hi - lo).max() / 2
    ax.set_xlim(c[0] - r, c[0] + r)
    ax.set_ylim(c[1] - r, c[1] + r)
    ax.set_zlim(c[2] - r, c[2] + r)
    ax.view_init(elev=35, azim=-60)
    ax.set_title(f"{mesh_path.name}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces")
    fig.tight_layout()
    return [("mesh", _fig_png(fig))]


def _section(title: str, pics: list[tuple[str, str]], body: str = "") -> str:
    imgs = "".join(f"<figure>{_img_tag(b, t)}<figcaption>{html.escape(t)}</figcaption></figure>" for t, b in pics)
    return f"<section><h2>{html.escape(title)}</h2>{body}{imgs}</section>"


def _kv_table(d: dict) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
                   for k, v in d.items() if not isinstance(v, (dict, list)) or k in ("resolution",))
    return f"<table>{rows}</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_report_html(out, report: dict) -> Path:
    """Write OUT/report.html from ``report`` (the pipeline's report dict) and the stage outputs."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    method = report.get("config", {}).get("method", "splat")
    parts = []
    stages = report.get("stages", {})
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{html.escape(s.get('status', ''))}</td>"
        f"<td>{html.escape(s.get('how', ''))}</td><td>{s.get('seconds', 0):.1f}</td>"
        f"<td>{html.escape(s.get('error') or '')}</td></tr>" for n, s in stages.items())
    parts.append("<section><h2>stages</h2><table><tr><th>stage</th><th>status</th><th>how</th>"
                 f"<th>seconds</th><th>error</th></tr>{rows}</table></section>")
    for title, key, pics in (("structure from motion", "sfm", lambda: _sfm_pictures(out)),
                             (f"training ({method})", "train", lambda: _training_pictures(out, method)),
                             ("export", "export", lambda: _mesh_picture(out)),
                             ("labels", "labels", list)):
        if key not in report and not (key == "sfm" and (out / "sfm").is_dir()):
            continue
        try:
            p = pics()
        except Exception as e:  # noqa: BLE001 - a picture that cannot be drawn is named, not fatal
            p = []
            report.setdefault("report_warnings", []).append(f"{key} pictures: {type(e).__name__}: {e}")
        parts.append(_section(title, p, _kv_table(report.get(key) or {})))
    status = html.escape(str(report.get("status")))
    msg = html.escape(str(report.get("message", "")))
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>recon reconstruct: {html.escape(str(out))}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:13px}}
figure{{display:inline-block;margin:.5em}}img{{max-width:100%}}figcaption{{font-size:12px;color:#555}}</style></head>
<body><h1>recon reconstruct</h1><p>input <code>{html.escape(str(report.get('input', '')))}</code> &rarr;
<code>{html.escape(str(out))}</code>; status <b>{status}</b> {msg}; total {report.get('total_seconds', 0)} s on
{html.escape(str(report.get('device', '')))}</p>{''.join(parts)}</body></html>"""
    from recon.io.files import atomic_write_text

    return atomic_write_text(out / "report.html", doc)
