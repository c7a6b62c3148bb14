"""`medlens ground IMAGE "right lower lobe" [...]`: boxes for named findings or anatomy.

MedGemma 1.5's localisation (prompt `cxr-grounding`, versioned data): the image is padded
to a square, the model answers `box_2d` lists normalised to 0-1000, and MedLens maps them
back to the image's own pixels (DICOM: column and row of the pixel data). Prints the
regions as JSON (`--json`) or one line per box; always with the disclaimer.
The image first passes the chest X-ray gate's model-free half (DICOM tags, pixel
statistics), as `classify`: a photo gets a one-line refusal and exit code 3, no boxes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from medlens.cli.common import (
    GeneratorOpt,
    LegacyModelOpt,
    fail,
    model_flag,
    print_json,
    settings_from,
)
from medlens.errors import ConfigError, MedLensError

if TYPE_CHECKING:
    from medlens.imaging.types import IngestedImage


def register(app: typer.Typer) -> None:
    app.command("ground")(ground_cmd)


def ground_cmd(
    image: Annotated[Path, typer.Argument(help="PNG, JPEG or DICOM chest X-ray.")],
    labels: Annotated[list[str], typer.Argument(help='What to locate, e.g. "right lower lobe".')],
    generator: GeneratorOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    model: LegacyModelOpt = None,
) -> None:
    """Locate named findings or anatomy on one chest X-ray (MedGemma 1.5 boxes)."""
    try:
        _run(image, labels, model_flag(generator, model, "--generator"), json_out)
    except MedLensError as err:
        fail(err)


def _gate(image: Path, ingested: IngestedImage) -> None:
    """Boxes on a photo would read as findings: refuse what is not a chest radiograph."""
    from medlens.cli.classify import REFUSED_EXIT
    from medlens.imaging.gate import gate_chest_xray

    decision = gate_chest_xray(ingested)
    if not decision.accepted:
        fail(f"{image.name}: image refused for chest X-ray boxes: {decision.reason}.", REFUSED_EXIT)


def _run(image: Path, labels: list[str], model: str | None, json_out: bool) -> None:
    from medlens.disclaimer import DISCLAIMER, TEST_MODEL_LABEL
    from medlens.imaging.ingest import ingest
    from medlens.models.registry import PreprocessSpec
    from medlens.models.session import default_session
    from medlens.tasks.interpret.grounding import clean_labels, ground_image
    from medlens.tasks.interpret.model_inputs import generator_parts
    from medlens.tasks.interpret.study import StudyImage

    wanted = clean_labels(labels)
    if not wanted:
        raise ConfigError("Name at least one finding or structure to locate.")
    settings = settings_from()
    ingested = ingest(image, max_pixels=settings.max_image_pixels)
    _gate(image, ingested)  # before loading the model
    generator, record = default_session().generator_for(settings, model)
    if not record.accepts_images:
        raise ConfigError(f"Model {record.id!r} cannot read images.")
    spec = record.preprocess or PreprocessSpec(896)
    part = generator_parts([StudyImage(ingested)], spec)[0]
    result = ground_image(
        generator, part, ingested.image.size, wanted, prompt_format=record.prompt_format
    )
    test = TEST_MODEL_LABEL if generator.info.is_test else None
    if json_out:
        print_json(
            {
                "image": image.name,
                "size": list(ingested.image.size),
                "labels": wanted,
                "regions": [r.model_dump(mode="json") for r in result.regions],
                "scale_seen": result.scale,
                "dropped": result.dropped,
                "warnings": result.warnings,
                "prompt": result.template.ref if result.template else None,
                "disclaimer": DISCLAIMER,
                "test_model_label": test,
            }
        )
        return
    if test:
        typer.echo(test, err=True)
    for r in result.regions:
        x0, y0, x1, y1 = (round(v) for v in r.box)
        typer.echo(f"{r.label}: x {x0}-{x1}, y {y0}-{y1} (pixels of {image.name})")
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)
    if not result.regions:
        typer.echo("No box found.")
    typer.echo(DISCLAIMER)
