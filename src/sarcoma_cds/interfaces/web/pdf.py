"""PDF of the tumour-board summary.

WeasyPrint (declared in the ``web`` extra; needs Pango from Debian) renders the same HTML
and print stylesheet as the browser's print view, so the PDF and the printed page match.
If WeasyPrint cannot be imported (not installed, or its system libraries are missing),
:func:`html_to_pdf` raises :class:`PdfUnavailable` and the route answers 503 pointing to
the browser's print view.
"""

from __future__ import annotations

from pathlib import Path


class PdfUnavailable(RuntimeError):
    pass


def html_to_pdf(html: str, base_dir: Path, stylesheets: list[Path]) -> bytes:
    try:
        from weasyprint import CSS, HTML
    except (ImportError, OSError) as e:  # OSError: Pango/GObject libraries missing
        raise PdfUnavailable(f"PDF rendering is not available here ({type(e).__name__})") from e
    doc = HTML(string=html, base_url=str(base_dir))
    return bytes(doc.write_pdf(stylesheets=[CSS(filename=str(p)) for p in stylesheets]))
