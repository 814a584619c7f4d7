"""Streamlit views of the listening page (``streamlit_app.py`` at the repository root is a thin shell).

:mod:`audiovis.ui.common` holds the cached loaders and helpers every view shares; optional views
(``coldstart``, ``visualise``) are modules here exposing ``<name>_ui(ws_path)``.
"""
