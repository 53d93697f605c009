"""Invoice-extraction service: receipt photos in, structured invoices and spending out."""

__version__ = "0.1.0"
