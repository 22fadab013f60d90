"""report.html: one static page per published run (tables, charts embedded as PNG), readable offline."""

from pipelines.report_html.build import REPORT_NAME, SECTION_IDS, write_report_html

__all__ = ["REPORT_NAME", "SECTION_IDS", "write_report_html"]
