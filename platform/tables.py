"""One way to write tables and figures for every report (summary, report, compare, ab, al_report)."""


def short_value(value) -> str:
    """A config value for one line: floats to 4 significant digits, strings quoted."""
    return f"{value:.4g}" if isinstance(value, float) else repr(value) if isinstance(value, str) else str(value)
