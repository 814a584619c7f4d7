"""Streamlit views of the listening page: :mod:`audiovis.ui.app` is the page (what ``audiovis serve`` runs;
``streamlit_app.py`` at the repository root is a thin entry point to it).

:mod:`audiovis.ui.common` holds the cached loaders and helpers every view shares; optional views
(``coldstart``, ``visualise``) are modules here exposing ``<name>_ui(ws_path)``.
"""
