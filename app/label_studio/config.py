"""A Label Studio label config read for what boxal needs: the RectangleLabels control, its classes, the
Image it labels and the task field that holds the image's URL."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

from app.errors import Invalid


@dataclass(frozen=True)
class LabelConfig:
    from_name: str  # the RectangleLabels control's name
    to_name: str  # the Image object's name
    value: str  # the task data field holding the image URL ($image -> "image")
    classes: list[str]


def parse(xml: str, *, what: str = "schema") -> LabelConfig:
    """The one RectangleLabels control of ``xml`` and the Image it labels; 422 naming what is missing."""
    if not xml or not xml.strip():
        raise Invalid(f"{what}: the label config is empty")
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise Invalid(f"{what}: the label config is not XML ({exc})") from exc
    controls = [tag for tag in root.iter() if tag.tag.lower() == "rectanglelabels"]
    if not controls:
        raise Invalid(
            f"{what}: the label config has no <RectangleLabels>; boxal serves box labeling (RectangleLabels "
            "on an <Image>)"
        )
    if len(controls) > 1:
        names = [c.get("name") for c in controls]
        raise Invalid(
            f"{what}: the label config has {len(controls)} <RectangleLabels> ({names}); boxal serves one"
        )
    control = controls[0]
    from_name, to_name = control.get("name"), control.get("toName")
    if not from_name or not to_name:
        raise Invalid(f"{what}: <RectangleLabels> needs name and toName")
    images = {tag.get("name"): tag for tag in root.iter() if tag.tag.lower() == "image"}
    image = images.get(to_name)
    if image is None:
        raise Invalid(f"{what}: <RectangleLabels toName={to_name!r}> names no <Image name={to_name!r}>")
    value = image.get("value") or ""
    if not value.startswith("$") or len(value) < 2:
        raise Invalid(f'{what}: <Image name={to_name!r}> needs value="$<task field>", got {value!r}')
    classes = [label.get("value") or "" for label in control if label.tag.lower() == "label"]
    if not classes or not all(classes):
        raise Invalid(f"{what}: <RectangleLabels name={from_name!r}> needs <Label value=...> children")
    if len(set(classes)) != len(classes):
        raise Invalid(f"{what}: <RectangleLabels name={from_name!r}> lists a label twice: {classes}")
    return LabelConfig(from_name=from_name, to_name=to_name, value=value[1:], classes=classes)
