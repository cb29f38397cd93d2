"""`recon label` as a library function: :func:`label_scene` runs a 2D backend on every
registered view of a reconstruction, lifts its labels onto the SfM points (or the splat centres
of a splat training output), writes the outputs and returns a :class:`LabelSceneResult`.

Outputs in the output folder: ``labels.ply`` (class_id, instance_id (-1 = none), confidence,
num_votes, point3D_id per vertex), ``labels.classes.json`` (id -> name), ``class_table.json``,
``splat_labelled.ply`` (splat scenes) and ``report.json`` (recon.io.report.write_report).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon.errors import FormatError
from recon.semantic.backends import BACKENDS as LABEL_BACKENDS

__all__ = ["LABEL_BACKENDS", "LabelSceneOptions", "LabelSceneResult", "label_scene"]


@dataclass(frozen=True)
class LabelSceneOptions:
    """Options of :func:`label_scene` (the flags of `recon label`).

    backend:        "gt" | "masks" | "darknet" | "onnx" | "hf" (recon.semantic.backends)
    masks:          class PNG folder (masks); the recon.synth dataset (gt; default: found from
                    the scene)
    instances:      instance PNG folder (masks)
    names:          class names file: JSON {"id": "name"} (masks) or one per line (darknet / onnx)
    void:           class PNG value meaning "no label" (None: every value is a class)
    model:          model file / folder (darknet, onnx, hf)
    score:          detection / segment score threshold (None: the backend's)
    text:           text queries (open-vocabulary hf)
    min_agreement:  winning share of the vote weight a label needs, in (0, 1]
    plain_vote:     no per-view reliability or mask-boundary weighting
    progress:       progress bar on stderr
    """

    backend: str
    masks: str | Path | None = None
    instances: str | Path | None = None
    names: str | Path | None = None
    void: int | None = 0
    model: str | Path | None = None
    score: float | None = None
    text: tuple[str, ...] | None = None
    min_agreement: float = 0.5
    plain_vote: bool = False
    progress: bool = True

    def validate(self) -> None:
        if self.backend not in LABEL_BACKENDS:
            raise ValueError(f"--backend: expected one of {', '.join(LABEL_BACKENDS)}, got {self.backend!r}")


@dataclass
class LabelSceneResult:
    """What :func:`label_scene` wrote. ``summary``: points, points_seen, points_labelled,
    labelled_fraction_of_seen, instances, observations, views."""

    scene: Path
    output: Path
    backend: str
    what: str  # "SfM points" | "splat centres"
    summary: dict
    notes: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    model: str | None = None
    masks_dir: str | None = None
    instances_dir: str | None = None
    seconds: float = 0.0

    @property
    def labelled_anything(self) -> bool:
        """True when some point got a class or an instance."""
        return bool(self.summary["points_labelled"] or self.summary["instances"])

    def to_json(self) -> dict:
        """The report.json document."""
        return {"scene": str(self.scene), "backend": self.backend, "model": self.model,
                "masks_dir": self.masks_dir, "instances_dir": self.instances_dir, "what": self.what,
                **self.summary, "options": self.options, "notes": self.notes[:50], "seconds": self.seconds}


def resolve_label_scene(path):
    """(posed recon.io.Artifact, splat PLY or None) of a scene `recon label` accepts."""
    from recon.io import detect
    from recon.io.detect import Kind

    art = detect(path)
    if art.kind == Kind.SPLAT_OUTPUT:
        if art.data_path is None:
            raise FormatError(art.path, "splat output without the data_path it was trained on (report.json); "
                                        "cannot find its cameras")
        posed = detect(art.data_path)
        if not posed.is_posed_images:
            raise FormatError(art.data_path, f"is a {posed.kind.label}, not posed images (training data of "
                                             f"{art.path})")
        return posed, art.ply
    art.require(Kind.SFM_OUTPUT, Kind.COLMAP_MODEL, Kind.SYNTH_DATASET, Kind.TRANSFORMS, verb="recon label")
    return art, None


def _gt_dataset(opts: LabelSceneOptions, posed) -> Path | None:
    if opts.backend != "gt":
        return None
    if opts.masks:
        return Path(opts.masks)
    if posed.gt is not None:
        return Path(posed.gt).parent
    images_dir = posed.images_dir
    if images_dir is not None and (Path(images_dir).parent / "gt.json").is_file():
        return Path(images_dir).parent
    return None


def _check_masks_match(backend, rec, posed) -> None:
    """Mask folders must name images of the model, and match at least one registered view."""
    if not hasattr(backend, "unmatched"):
        return
    known = {im.name for im in rec.images.values()}
    if posed.images_dir is not None:
        from recon.io.images import list_images

        known |= {p.name for p in list_images(posed.images_dir)}
    stray = backend.unmatched(sorted(known))
    if stray:
        raise FormatError(stray[0], f"mask for an image that is not in the model {posed.path} "
                                    f"({len(stray)} such mask file{'s' if len(stray) > 1 else ''}; masks are "
                                    "matched to images by name without extension)")
    if not any(backend.has(im.name) for im in rec.registered_images):
        raise FormatError(backend.mask_files()[0].parent, "no mask matches a registered image of the model")


def label_scene(scene, output, options: LabelSceneOptions) -> LabelSceneResult:
    """Label ``scene`` (a `recon sfm` output, COLMAP model, recon.synth dataset, transforms.json
    dataset or `recon train splat` output) into the folder ``output`` (created).

    Raises ValueError naming the option, FormatError naming the file (a model that does not
    load, masks of another size or for images not in the model, an empty mask folder).
    """
    from recon.io import read_model
    from recon.io.report import write_report
    from recon.semantic.backends import make_backend
    from recon.semantic.lift import LabelOptions
    from recon.semantic.scene import label_reconstruction, view_segmenter

    options.validate()
    t0 = time.perf_counter()
    posed, splat_ply = resolve_label_scene(scene)
    rec = read_model(posed.model_dir or posed.transforms)
    lift = LabelOptions(min_agreement=options.min_agreement, reliability_rounds=0 if options.plain_vote else 2,
                        boundary_px=0 if options.plain_vote else 2)
    backend = make_backend(options.backend, model=options.model,
                           masks=options.masks if options.backend == "masks" else None,
                           instances=options.instances, dataset=_gt_dataset(options, posed), names=options.names,
                           score_threshold=options.score, text_queries=None if options.text is None
                           else list(options.text), void=options.void)
    _check_masks_match(backend, rec, posed)
    gaussians = xyz = None
    if splat_ply is not None:
        from recon.io import read_splat_ply

        gaussians = read_splat_ply(splat_ply)
        xyz = gaussians.means.astype(np.float64)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    lifted = label_reconstruction(rec, view_segmenter(backend, posed.images_dir), xyz=xyz,
                                  names=getattr(backend, "names", None), options=lift, progress=options.progress)
    _write_outputs(out, lifted, rec, gaussians)
    result = LabelSceneResult(
        Path(scene), out, options.backend, "splat centres" if gaussians is not None else "SfM points",
        lifted.summary(), list(lifted.notes),
        {"min_agreement": lift.min_agreement, "reliability_rounds": lift.reliability_rounds,
         "boundary_px": lift.boundary_px},
        None if options.model is None else str(options.model), None if options.masks is None else str(options.masks),
        None if options.instances is None else str(options.instances), round(time.perf_counter() - t0, 3))
    write_report(out / "report.json", result.to_json())
    return result


def _write_outputs(out: Path, result, rec, gaussians) -> None:
    import json

    from recon.io import PointCloud, write_ply
    from recon.io.files import atomic_write_text
    from recon.semantic.io import class_table, write_class_table

    lab = result.labels
    attrs = {"class_id": lab.class_id, "instance_id": lab.instance_id, "confidence": lab.confidence,
             "num_votes": lab.num_votes}
    if result.point_ids is not None:
        rgb = np.array([rec.points3D[int(p)].rgb for p in result.point_ids], np.uint8).reshape(-1, 3)
        attrs["point3D_id"] = result.point_ids.astype(np.int32)
    else:
        rgb = np.round(gaussians.colors_dc * 255).astype(np.uint8)
    write_ply(out / "labels.ply", PointCloud(result.xyz, rgb, attributes=attrs),
              comments=("recon label: class_id / instance_id (-1 = none), confidence per vertex",))
    atomic_write_text(out / "labels.classes.json",
                      json.dumps({str(k): v for k, v in sorted(result.names.items())}, indent=1))
    what = "splats" if gaussians is not None else "points"
    write_class_table(out / "class_table.json", class_table(lab.class_id, lab.instance_id, result.names,
                                                            lab.instance_class, what=what))
    if gaussians is not None:
        from recon.io import write_splat_ply

        write_splat_ply(out / "splat_labelled.ply", gaussians,
                        attributes={"class_id": lab.class_id, "instance_id": lab.instance_id,
                                    "confidence": lab.confidence})
