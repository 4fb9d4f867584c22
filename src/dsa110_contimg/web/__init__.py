"""The review web site of the photometry service (``contimg-photometry serve``).

:func:`~dsa110_contimg.web.app.create_app` builds the Starlette application; the pages
are Jinja2 templates in ``templates/``, the style sheet in ``static/``, the plots inline
SVG drawn by :mod:`dsa110_contimg.web.svg`. Needs the ``web`` extra
(``pip install '.[web]'``: starlette, jinja2, uvicorn, python-multipart).
"""
