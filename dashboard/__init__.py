"""The web dashboard: pages, JSON API and live updates for researchers and operators.

The application factory is :func:`dashboard.app.create_app`. Blueprints: ``auth`` (login, account,
tokens), ``ui`` (server-rendered pages), ``api`` (JSON under ``/api/v1``, bearer tokens,
CSRF-exempt) and ``stream`` (server-sent live updates fed by the process's single MQTT subscriber,
:mod:`dashboard.hub`). This package's own module imports nothing, so ``raas --help`` (which loads
:mod:`dashboard.cli`) stays light.
"""
