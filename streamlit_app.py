"""The audiovis listening page, for ``streamlit run streamlit_app.py`` in a source checkout (and AppTest).

The page lives in the package, :mod:`audiovis.ui.app` (what ``audiovis serve`` runs, from a wheel too).
"""
from audiovis.ui.app import main

main()
