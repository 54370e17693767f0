"""Regenerates the embedded samples in `sample_data/` from `../shared/data`.

The samples are small, resized copies of the shared datasets, committed so
that `make demo` and the tests run on real photographs without the shared
folder. Running this script again gives byte-identical files (the selection
is seeded and PIL's encoders are deterministic).

    python sample_data/make_samples.py [--source ../shared/data]

- `oxford_pets/`: 20 image/trimap pairs per breed (60 in all), picked with
  `random.Random(0).sample` from the sorted names of each breed, with
  `Abyssinian_5` (the one RGBA PNG photo) always included. Resized so that the
  long side is 192 px: photos bilinear, saved as JPEG quality 90 (the PNG one
  stays an RGBA PNG), trimaps nearest-neighbour as 8-bit PNG. `index.csv`
  keeps the source columns with `width`/`height` updated.
- `camvid/`: 8 `train` and 4 `val` frames, picked with `random.Random(0).sample`
  from the sorted names of each split, resized from 480x360 to 240x180:
  frames bilinear (RGB PNG), label maps nearest-neighbour (8-bit PNG).
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared" / "data"

PETS_PER_BREED = 20
PETS_LONG_SIDE = 192
PETS_ALWAYS = ("Abyssinian_5",)
CAMVID_COUNTS = {"train": 8, "val": 4}
CAMVID_SIZE = (240, 180)  # (width, height)
JPEG_QUALITY = 90


def _pets(source: Path, target: Path) -> None:
    with open(source / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_breed: dict[str, list[str]] = {}
    for row in rows:
        by_breed.setdefault(row["breed"], []).append(row["name"])
    chosen = set()
    for breed in sorted(by_breed):
        names = sorted(by_breed[breed])
        picks = random.Random(0).sample(names, PETS_PER_BREED)
        forced = [n for n in PETS_ALWAYS if n in names and n not in picks]
        if forced:  # replace the last picks, keeping 20 per breed
            picks = picks[: PETS_PER_BREED - len(forced)] + forced
        chosen.update(picks)

    for sub in ("images", "trimaps"):  # keep README.md
        shutil.rmtree(target / sub, ignore_errors=True)
        (target / sub).mkdir(parents=True)
    out_rows = []
    for row in rows:
        if row["name"] not in chosen:
            continue
        image = Image.open(source / row["image"])
        trimap = Image.open(source / row["trimap"])
        width, height = image.size
        scale = PETS_LONG_SIDE / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
        trimap = trimap.resize(size, Image.Resampling.NEAREST)
        if row["format"] == "JPEG":
            image.convert("RGB").save(
                target / row["image"], "JPEG", quality=JPEG_QUALITY
            )
        else:
            image.save(target / row["image"], "PNG")
        trimap.save(target / row["trimap"], "PNG")
        out_rows.append({**row, "width": size[0], "height": size[1]})
    with open(target / "index.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(out_rows)
    print(f"oxford_pets: {len(out_rows)} pairs -> {target}")


def _camvid(source: Path, target: Path) -> None:
    for split, count in CAMVID_COUNTS.items():
        shutil.rmtree(target / split, ignore_errors=True)  # keep README.md
        names = sorted(
            line.strip()
            for line in (source / split / "files.txt").read_text().splitlines()
            if line.strip()
        )
        picks = sorted(random.Random(0).sample(names, count))
        (target / split / "images").mkdir(parents=True)
        (target / split / "labels").mkdir()
        for name in picks:
            image = Image.open(source / split / "images" / name)
            label = Image.open(source / split / "labels" / name)
            image.convert("RGB").resize(
                CAMVID_SIZE, Image.Resampling.BILINEAR
            ).save(target / split / "images" / name, "PNG")
            label.resize(CAMVID_SIZE, Image.Resampling.NEAREST).save(
                target / split / "labels" / name, "PNG"
            )
        (target / split / "files.txt").write_text("\n".join(picks) + "\n")
        print(f"camvid/{split}: {len(picks)} frames -> {target / split}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output-dir", type=Path, default=HERE)
    args = parser.parse_args(argv)
    _pets(args.source / "oxford_pets", args.output_dir / "oxford_pets")
    _camvid(args.source / "camvid", args.output_dir / "camvid")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
