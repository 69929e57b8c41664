"""Find the chart whose values are being validated: `--chart DIR`, the chart shipped inside the wheel
(`validator/_chart`, force-included by pyproject), or the repository's `chart/` in an editable checkout."""

from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


class ChartError(Exception):
    """The chart directory is missing or lacks values.yaml / values.schema.json (a usage error)."""


def default_chart_dir() -> str:
    shipped = os.path.join(_HERE, "_chart")
    if os.path.isfile(os.path.join(shipped, "values.schema.json")):
        return shipped
    return os.path.join(os.path.dirname(_HERE), "chart")


class Chart:
    """The chart's own defaults and schema, read as bytes (the schema hash keys the compiled cache)."""

    __slots__ = ("directory", "schema_bytes", "schema_path", "values_path", "values_text")

    def __init__(self, directory: str | None) -> None:
        self.directory = os.path.abspath(directory or default_chart_dir())
        self.values_path = os.path.join(self.directory, "values.yaml")
        self.schema_path = os.path.join(self.directory, "values.schema.json")
        if not os.path.isfile(os.path.join(self.directory, "Chart.yaml")):
            raise ChartError(f"{self.directory} is not a Helm chart (no Chart.yaml); pass --chart DIR")
        try:
            with open(self.schema_path, "rb") as fh:
                self.schema_bytes = fh.read()
        except OSError:
            raise ChartError(
                f"{self.schema_path} is missing: the validator checks values against the chart's own schema"
            ) from None
        try:
            with open(self.values_path, "rb") as fh:
                self.values_text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            self.values_text = ""

    def display_values_path(self) -> str:
        """Short path for reports: relative to the working directory when inside it."""
        rel = os.path.relpath(self.values_path)
        return self.values_path if rel.startswith("..") else rel
