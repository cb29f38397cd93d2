"""`recon data`: the catalog of public datasets (list, describe, download with checksum)."""

from __future__ import annotations

import argparse

from recon.cli._style import add_output, add_quiet

NAME = "data"
HELP = "list, describe and download public datasets (Mip-NeRF 360, Tanks and Temples, BAL, ...)"
ORDER = 90
DESCRIPTION = """\
The catalog of public datasets recon knows (one TOML per dataset in the `datasets/` folder,
shipped with the package): where to get each, its licence, format, scenes and citation.

  recon data list                          one line per dataset
  recon data info NAME                     every field of one dataset
  recon data download NAME [-o DEST] [--scene S] [--extract]   (pooch: progress, sha256, cache)
                                           fetch into folder DEST; the sha256 is checked when
                                           the catalog has one (a mismatch removes the file);
                                           --extract unpacks it there (.7z needs the 7z tool)
  recon data prepare NAME [SCENE] --from DEST [-o OUT] [--factor N]
                                           convert the downloaded scene into the layout
                                           `recon train` / `recon ba` read (default OUT:
                                           DEST/prepared/SCENE); nerf_synthetic, mipnerf360,
                                           tandt_db, dtu_2dgs (+ DTU reference points), bal

Datasets stored per scene (bal, middlebury2014) need --scene.
Example: recon data download mipnerf360 -o data/ --extract
         recon data prepare mipnerf360 garden --from data/ -o data/garden4 && recon train splat data/garden4 -o out
Some hosts (Google Drive) need a browser: `info` shows the link.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="one line per dataset")
    p = sub.add_parser("info", help="every field of one dataset")
    p.add_argument("name", help="dataset name, as printed by `recon data list`")
    p = sub.add_parser("download", help="download a dataset (or one scene) into a folder")
    p.add_argument("name", help="dataset name, as printed by `recon data list`")
    add_output(p, "destination folder (created if missing; default: $RECON_DATA_DIR or ~/.cache/recon/NAME)",
               metavar="DEST", required=False)
    p.add_argument("--scene", help="scene to fetch, for datasets stored per scene")
    p.add_argument("--extract", action="store_true",
                   help="unpack the archive into DEST after the download (.zip, .tar.*, .bz2, .gz)")
    add_quiet(p, "no progress bar")
    p = sub.add_parser("prepare", help="convert a downloaded dataset into the layout recon train / ba read",
                       description="Convert a downloaded catalogued scene into the layout `recon train` / "
                                   "`recon reconstruct` / `recon ba` read (see recon/io/prepare.py).\n\n"
                                   "  recon data prepare nerf_synthetic lego --from data/ -o data/lego\n"
                                   "  recon data prepare mipnerf360 garden --from data/ --factor 4\n"
                                   "  recon data prepare dtu_2dgs scan24 --from data/dtu -o data/scan24\n"
                                   "  recon data prepare bal ladybug/problem-49-7776-pre --from data/",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="dataset name, as printed by `recon data list`")
    p.add_argument("scene", nargs="?", help="scene (required when the dataset has several)")
    p.add_argument("--from", dest="source", required=True, metavar="DEST",
                   help="the folder the dataset was downloaded / extracted into (or the archive)")
    p.add_argument("-o", "--output", help="output folder (default DEST/prepared/SCENE)")
    p.add_argument("--factor", type=int, choices=(1, 2, 4, 8),
                   help="Mip-NeRF 360: images_N level (default 4 outdoor, 2 indoor)")


def _size(mb: float) -> str:
    if mb <= 0:
        return "?"
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def run(args: argparse.Namespace) -> int:
    from recon.io import catalog

    if args.action == "list":
        rows = catalog.list_datasets()
        width = max(len(d.name) for d in rows)
        for d in rows:
            note = "  (manual download)" if d.manual else ""
            print(f"{d.name:<{width}}  {d.format:<10} {_size(d.size_mb):>8}  {len(d.scenes):>3} scenes  "
                  f"{d.title or d.name}{note}")
        return 0
    if args.action == "info":
        d = catalog.get_dataset(args.name)
        fields = [("name", d.name), ("title", d.title), ("homepage", d.homepage), ("url", d.url),
                  ("manual download", d.manual_note if d.manual else ""),
                  ("sha256", d.sha256 or f"(none) {d.sha256_note}"),
                  ("license", f"{d.license} ({d.license_note})" if d.license_note else d.license),
                  ("format", d.format), ("layout", d.layout),
                  ("size", f"{_size(d.size_mb)} {d.size_note}".strip()),
                  ("scenes", ", ".join(d.scenes)), ("citation", d.citation)]
        for key, value in fields:
            if value:
                print(f"{key + ':':<17}" + str(value).replace("\n", "\n" + " " * 17))
        return 0
    if args.action == "prepare":
        from recon.io.prepare import prepare

        got = prepare(args.name, args.source, args.scene, args.output, factor=args.factor)
        print(f"{got.path}  ({got.kind}, {got.num_images} {'cameras' if got.kind == 'bal' else 'images'}"
              f"{', reference ' + str(got.reference) if got.reference else ''})")
        for note in got.notes:
            print(f"  note: {note}")
        return 0
    result = catalog.download(args.name, args.output, scene=args.scene, progress=not args.quiet,
                              unpack=args.extract)
    state = "sha256 verified" if result.verified else "no sha256 in the catalog to check against"
    print(f"{result.path}  sha256 {result.sha256}  ({state})")
    if args.extract:
        print(f"extracted into {result.path.parent}")
    return 0
