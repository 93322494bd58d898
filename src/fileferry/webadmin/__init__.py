"""The web admin and its REST API (``fileferry serve --admin ADDR:PORT``).

Starlette pages rendered with Jinja2 and a JSON API, served by uvicorn inside
the server's own event loop, so they read the live sessions directly rather
than through another process. Only imported when ``--admin`` is given: the
web libraries are an optional extra (``pip install 'fileferry[admin]'``).

* :mod:`.model`: what the admin sees of the server (the server builds it).
* :mod:`.auth`: administrators' logins, web sessions, CSRF, API tokens.
* :mod:`.forms`: account fields from a form or JSON, by ``fileferry user``'s rules.
* :mod:`.views`: the JSON shapes both the pages and the API use.
* :mod:`.pages`, :mod:`.api`: the routes; :mod:`.service`: the app and its listener.
* :mod:`.stats`: an observer counting logins and bytes per minute.
"""
