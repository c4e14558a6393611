"""Reports: benchmark runner (``bench``), plotly figures and the demo."""

__all__: list[str] = []
