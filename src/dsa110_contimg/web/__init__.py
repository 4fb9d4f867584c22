"""The review web site of the photometry service (``contimg-photometry serve``).

:func:`~dsa110_contimg.web.app.create_app` builds the Starlette application from the
handlers of :mod:`dsa110_contimg.web.handlers` (one module per concern, module-level
functions over the shared :class:`~dsa110_contimg.web.state.Site` on
``request.app.state.site``); :mod:`~dsa110_contimg.web.auth` decides who may review,
:mod:`~dsa110_contimg.web.paging` cuts lists into pages. The pages are Jinja2 templates
in ``templates/``, the style sheet in ``static/``, the plots inline SVG drawn by
:mod:`dsa110_contimg.web.svg`. Needs the ``web`` extra (``pip install '.[web]'``:
starlette, jinja2, uvicorn, python-multipart).
"""
